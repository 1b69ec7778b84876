//! A small Server-Sent Events parser: bytes in as they arrive, events out. Only the fields the
//! model APIs use (`event`, `data`); `id`, `retry` and comments are skipped.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty when the event had none.
    pub event: String,
    /// The `data:` lines joined with '\n'.
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet ended (a chunk may split a line, or a UTF-8 character).
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    /// The last byte seen was '\r': a '\n' right after it ends no second line.
    after_cr: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feed bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&String::from_utf8_lossy(&line)) {
                        events.push(event);
                    }
                }
                _ => self.line.push(b),
            }
        }
        events
    }

    /// The stream ended: an event not closed by a blank line still counts.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            if let Some(event) = self.line_done(&String::from_utf8_lossy(&line)) {
                return Some(event);
            }
        }
        self.dispatch()
    }

    fn line_done(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_split_anywhere_across_chunks_come_out_whole() {
        let text =
            "event: message_start\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: héllo\ndata: world\n\n";
        let whole = SseParser::new().push(text.as_bytes());
        assert_eq!(
            whole,
            vec![ev("message_start", "{\"a\":1}"), ev("", "héllo\nworld")]
        );
        for split in 0..text.len() {
            let mut p = SseParser::new();
            let mut got = p.push(&text.as_bytes()[..split]);
            got.extend(p.push(&text.as_bytes()[split..]));
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn crlf_and_cr_line_endings_and_no_space_after_the_colon() {
        let got = SseParser::new().push(b"data:one\r\n\r\ndata: two\r\rdata: [DONE]\n\n");
        assert_eq!(got, vec![ev("", "one"), ev("", "two"), ev("", "[DONE]")]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_the_last_one_counts_at_the_end() {
        let mut p = SseParser::new();
        assert_eq!(p.push(b"event: ping\n\ndata: tail"), vec![]);
        assert_eq!(p.finish(), Some(ev("", "tail")));
        assert_eq!(p.finish(), None);
    }
}
