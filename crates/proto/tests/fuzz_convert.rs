//! Generated wire inputs: random `google.protobuf.Value` trees, random bytes decoded as request
//! messages, and random timestamps go through the shared wire -> domain conversions without a
//! panic, and what comes out round-trips.

use proptest::prelude::*;
use prost::Message;
use prost_types::{ListValue, Struct, Timestamp, Value, value::Kind};
use switchyard_proto::convert::{from_timestamp, json_from_value, params_from_struct, struct_from_params};
use switchyard_proto::{JobHistoryRequest, StartExecutionRequest, StartJobRequest};

/// Cases per property: the whole suite stays around a minute in CI.
const CASES: u32 = 256;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value { kind: None }),
        Just(Value { kind: Some(Kind::NullValue(0)) }),
        any::<i32>().prop_map(|n| Value { kind: Some(Kind::NullValue(n)) }),
        any::<bool>().prop_map(|b| Value { kind: Some(Kind::BoolValue(b)) }),
        any::<f64>().prop_map(|n| Value { kind: Some(Kind::NumberValue(n)) }),
        prop::sample::select(vec![f64::NAN, f64::INFINITY, -f64::INFINITY, 9.0e15, -0.0, 1e300])
            .prop_map(|n| Value { kind: Some(Kind::NumberValue(n)) }),
        "\\PC{0,16}".prop_map(|s| Value { kind: Some(Kind::StringValue(s)) }),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|values| Value { kind: Some(Kind::ListValue(ListValue { values })) }),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..6).prop_map(|fields| Value {
                kind: Some(Kind::StructValue(Struct { fields: fields.into_iter().collect() }))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_values_convert_to_json_and_params_round_trip(fields in prop::collection::btree_map("\\PC{0,8}", value(), 0..6)) {
        let params = params_from_struct(Some(Struct { fields: fields.clone().into_iter().collect() }));
        prop_assert_eq!(params.len(), fields.len());
        // What came out once is stable: converting it again gives the same map.
        let again = params_from_struct(Some(struct_from_params(&params)));
        prop_assert_eq!(again, params);
        for v in fields.into_values() {
            let _ = json_from_value(v);
        }
    }

    #[test]
    fn random_bytes_decoded_as_requests_convert_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(start) = StartJobRequest::decode(bytes.as_slice()) {
            let _ = params_from_struct(start.params);
        }
        if let Ok(start) = StartExecutionRequest::decode(bytes.as_slice()) {
            let _ = start.encoded_len();
        }
        if let Ok(history) = JobHistoryRequest::decode(bytes.as_slice()) {
            let _ = history.since.as_ref().map(from_timestamp);
            let _ = history.until.as_ref().map(from_timestamp);
        }
    }

    #[test]
    fn random_timestamps_convert_or_are_refused_without_panic(seconds in any::<i64>(), nanos in any::<i32>()) {
        if let Some(at) = from_timestamp(&Timestamp { seconds, nanos }) {
            prop_assert_eq!(at.timestamp(), seconds);
        }
    }
}

#[test]
fn a_request_nested_past_the_decoder_limit_is_refused_not_overflowing_the_stack() {
    // 200 nested lists: prost refuses to decode past its recursion limit of 100.
    let mut v = Value { kind: Some(Kind::NumberValue(1.0)) };
    for _ in 0..200 {
        v = Value { kind: Some(Kind::ListValue(ListValue { values: vec![v] })) };
    }
    let request = StartJobRequest {
        job: "j".into(),
        params: Some(Struct { fields: [("deep".to_string(), v)].into_iter().collect() }),
        ..StartJobRequest::default()
    };
    let bytes = request.encode_to_vec();
    assert!(StartJobRequest::decode(bytes.as_slice()).is_err(), "prost bounds nesting on decode");
}
