//! gRPC statuses whose message fits the trailers: a status travels in HTTP/2 headers that
//! clients cap (16 KiB by default), so an error echoing a huge input must be cut, saying so.

use tonic::{Code, Status};

/// The longest status message sent, in bytes.
pub const MAX_MESSAGE: usize = 8 << 10;

/// A status with `message` cut to [`MAX_MESSAGE`] bytes (on a character boundary), ending with
/// how much was left out.
pub fn bounded(code: Code, message: String) -> Status {
    Status::new(code, cut(message))
}

fn cut(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let total = message.len();
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(&format!("… ({} more bytes of this message left out)", total - end));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_messages_pass_and_long_ones_are_cut_on_a_character_boundary() {
        assert_eq!(bounded(Code::NotFound, "no".into()).message(), "no");
        let long = "é".repeat(MAX_MESSAGE);
        let status = bounded(Code::InvalidArgument, long);
        assert!(status.message().len() < MAX_MESSAGE + 64, "{}", status.message().len());
        assert!(status.message().ends_with("more bytes of this message left out)"), "{}", status.message());
    }
}
