//! An incremental Server-Sent Events parser (the WHATWG event-stream format): feed it bytes as
//! they arrive, get whole events and comments back.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `id:` field of this event, if it had one.
    pub(crate) id: Option<String>,
    /// The `event:` field; `message` when absent, as the format says.
    pub(crate) event: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SseItem {
    /// An event.
    Event(SseEvent),
    /// A `:` comment line (servers send them as keep-alives).
    Comment(String),
    /// A `retry:` field: the reconnection delay in milliseconds.
    Retry(u64),
}

/// Parser state across chunks.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a leading `\n` in the next one ends nothing.
    after_cr: bool,
    /// The event being built.
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// A fresh parser.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns what it completed, in order.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<SseItem> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    fn end_line(&mut self, out: &mut Vec<SseItem>) {
        let raw = std::mem::take(&mut self.line);
        let line = String::from_utf8_lossy(&raw);
        if line.is_empty() {
            // Dispatch. An event without data is not dispatched, but its id still counts, so
            // report it with empty data for resumption purposes when it carried an id.
            let id = self.id.take();
            let event = self.event.take();
            match self.data.take() {
                Some(data) => out.push(SseItem::Event(SseEvent {
                    id,
                    event: event.unwrap_or_else(|| "message".to_owned()),
                    data,
                })),
                None if id.is_some() => out.push(SseItem::Event(SseEvent {
                    id,
                    event: event.unwrap_or_else(|| "message".to_owned()),
                    data: String::new(),
                })),
                None => {}
            }
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(SseItem::Comment(
                comment.strip_prefix(' ').unwrap_or(comment).to_owned(),
            ));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    out.push(SseItem::Retry(ms));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, event: &str, data: &str) -> SseItem {
        SseItem::Event(SseEvent {
            id: id.map(str::to_owned),
            event: event.to_owned(),
            data: data.to_owned(),
        })
    }

    #[test]
    fn parses_events_comments_and_retry() {
        let mut p = SseParser::new();
        let items = p.feed(b": keep-alive\n\nid: 7\nevent: enqueued\ndata: {\"a\":1}\n\nretry: 1500\ndata: x\ndata:y\n\n");
        assert_eq!(
            items,
            vec![
                SseItem::Comment("keep-alive".into()),
                event(Some("7"), "enqueued", "{\"a\":1}"),
                SseItem::Retry(1500),
                event(None, "message", "x\ny"),
            ]
        );
    }

    #[test]
    fn events_split_across_chunks_and_line_endings() {
        let whole =
            b"id: 1\r\nevent: a\r\ndata: one\r\n\r\nid: 2\rdata: two\r\rid:3\ndata:three\n\n";
        for split in 0..whole.len() {
            let mut p = SseParser::new();
            let mut items = p.feed(&whole[..split]);
            items.extend(p.feed(&whole[split..]));
            assert_eq!(
                items,
                vec![
                    event(Some("1"), "a", "one"),
                    event(Some("2"), "message", "two"),
                    event(Some("3"), "message", "three"),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn unfinished_events_are_held_back() {
        let mut p = SseParser::new();
        assert!(p.feed(b"id: 1\ndata: x\n").is_empty());
        assert_eq!(p.feed(b"\n"), vec![event(Some("1"), "message", "x")]);
    }
}
