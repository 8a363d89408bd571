//! gRPC messages as the fuzzer writes them: protobuf's wire format by hand, so a message
//! can carry what generated code never sends — a string field that is not UTF-8, a field
//! with the wrong wire type, a length that runs past the end — and the gRPC framing
//! around it.

/// A protobuf message under construction.
#[derive(Debug, Clone, Default)]
pub struct Message {
    bytes: Vec<u8>,
}

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        varint(
            &mut self.bytes,
            (u64::from(field) << 3) | u64::from(wire_type),
        );
    }

    /// A length-delimited field: `string`, `bytes` or an embedded message.
    pub fn bytes(mut self, field: u32, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        self.key(field, 2);
        varint(&mut self.bytes, value.len() as u64);
        self.bytes.extend_from_slice(value);
        self
    }

    /// A length-delimited field, left out when empty as proto3 writers do.
    pub fn bytes_if_any(self, field: u32, value: impl AsRef<[u8]>) -> Self {
        if value.as_ref().is_empty() {
            self
        } else {
            self.bytes(field, value)
        }
    }

    pub fn message(self, field: u32, value: Message) -> Self {
        self.bytes(field, value.bytes)
    }

    /// A varint field: `int32` (negative numbers take ten bytes), `int64`, `bool`, enums.
    pub fn varint(mut self, field: u32, value: u64) -> Self {
        self.key(field, 0);
        varint(&mut self.bytes, value);
        self
    }

    /// One entry of a `map<string, string>` field.
    pub fn map_entry(self, field: u32, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.message(field, Message::new().bytes(1, key).bytes(2, value))
    }

    /// Raw bytes appended as they are (a field that does not parse, or garbage).
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One gRPC length-prefixed message: the compression flag, the length, the bytes.
pub fn frame(message: &[u8]) -> Vec<u8> {
    frame_with(0, message.len() as u32, message)
}

/// A frame whose flag and declared length may lie about what follows.
pub fn frame_with(flag: u8, declared_length: u32, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(flag);
    out.extend_from_slice(&declared_length.to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use tandem_proto::{common, runtime};

    #[test]
    fn hand_written_messages_decode_as_the_generated_types() {
        let item = Message::new()
            .bytes(1, "k")
            .bytes(2, b"\x01\x02")
            .message(3, Message::new().bytes(1, "7"))
            .map_entry(4, "ttlInSeconds", "60")
            .message(5, Message::new().varint(1, 1));
        let bytes = Message::new()
            .bytes(1, "statestore")
            .message(2, item)
            .into_bytes();
        let decoded = runtime::SaveStateRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.store_name, "statestore");
        let state = &decoded.states[0];
        assert_eq!(state.key, "k");
        assert_eq!(state.value, b"\x01\x02");
        assert_eq!(state.etag.as_ref().unwrap().value, "7");
        assert_eq!(state.metadata["ttlInSeconds"], "60");
        assert_eq!(
            state.options.as_ref().unwrap().concurrency(),
            common::state_options::StateConcurrency::ConcurrencyFirstWrite
        );
    }

    #[test]
    fn negative_int32_takes_ten_bytes_and_decodes() {
        let bytes = Message::new()
            .bytes(1, "s")
            .varint(3, (-1i64) as u64)
            .into_bytes();
        let decoded = runtime::GetBulkStateRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.parallelism, -1);
    }

    #[test]
    fn a_string_field_that_is_not_utf8_does_not_decode() {
        let bytes = Message::new().bytes(1, b"\xff\xfe").into_bytes();
        assert!(runtime::GetStateRequest::decode(bytes.as_slice()).is_err());
    }

    #[test]
    fn frames_carry_flag_and_big_endian_length() {
        assert_eq!(frame(b"ab"), vec![0, 0, 0, 0, 2, b'a', b'b']);
        assert_eq!(frame_with(1, 9, b"a"), vec![1, 0, 0, 0, 9, b'a']);
    }
}
