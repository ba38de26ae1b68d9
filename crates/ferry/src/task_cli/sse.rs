//! Server-Sent Events framing: bytes as they arrive in, the `data` of each whole event out.
//! An event ends at a blank line; lines end with LF, CRLF or CR; `:` lines are comments (the
//! server's keep-alives); fields other than `data` are not needed here.

#[derive(Default)]
pub struct Events {
    /// Bytes of a line not yet ended.
    partial: Vec<u8>,
    /// The `data` lines of the event being read.
    data: Vec<String>,
    /// The last byte was a CR: an LF right after it ends nothing more.
    after_cr: bool,
}

impl Events {
    /// Takes the next bytes; returns the data of each event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut done = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.partial);
                    if let Some(event) = self.line(&line) {
                        done.push(event);
                    }
                }
                _ => self.partial.push(b),
            }
        }
        done
    }

    fn line(&mut self, line: &[u8]) -> Option<String> {
        if line.is_empty() {
            if self.data.is_empty() {
                return None;
            }
            return Some(std::mem::take(&mut self.data).join("\n"));
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        if field == "data" {
            self.data.push(value.to_string());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = b": keep-alive\n\nid: 1\ndata: {\"seq\":1}\n\nid: 2\r\ndata: a\r\ndata: b\r\n\r\nid: 3\rdata:c\r\r";
        for cut in 0..stream.len() {
            let mut events = Events::default();
            let mut got = events.push(&stream[..cut]);
            got.extend(events.push(&stream[cut..]));
            assert_eq!(got, ["{\"seq\":1}", "a\nb", "c"], "cut at {cut}");
        }
    }

    #[test]
    fn an_unfinished_event_is_not_given() {
        let mut events = Events::default();
        assert!(events.push(b"data: x\n").is_empty());
        assert_eq!(events.push(b"\n"), ["x"]);
    }
}
