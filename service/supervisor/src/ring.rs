//! A service's recent output kept in memory: the last 1000 lines of its stdout and stderr,
//! across restarts, each with the time it was read and a sequence number, so that what one run
//! printed can be told from the runs before.
//! Runs in: the supervisor daemon; the copy tasks of a service's pipes add lines, the event
//! loop and `service logs -f` followers read them (a watch channel tells followers of new
//! lines). One tokio thread, but tasks must be `Send`, hence the mutex.
//! Mirrors the journal's view of a unit (`systemctl status` shows its last lines).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Lines kept per service.
pub const CAPACITY: usize = 1000;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// One line of output, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Counts every line the service ever printed, from 0.
    pub seq: u64,
    pub time: SystemTime,
    pub stream: Stream,
    pub text: String,
}

impl fmt::Display for Line {
    /// `12:00:01.234 stderr: text`, the time of day in UTC.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since_epoch = self.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let day_secs = since_epoch.as_secs() % 86_400;
        write!(
            f,
            "{:02}:{:02}:{:02}.{:03} {}: {}",
            day_secs / 3600,
            day_secs / 60 % 60,
            day_secs % 60,
            since_epoch.subsec_millis(),
            self.stream.as_str(),
            self.text
        )
    }
}

#[derive(Debug)]
struct Lines {
    lines: VecDeque<Line>,
    next_seq: u64,
}

#[derive(Debug)]
struct Shared {
    lines: Mutex<Lines>,
    /// The sequence number the next line will get, for followers.
    pushed: watch::Sender<u64>,
}

/// The ring; clones share it.
#[derive(Debug, Clone)]
pub struct Ring {
    inner: Arc<Shared>,
}

impl Default for Ring {
    fn default() -> Self {
        Self {
            inner: Arc::new(Shared {
                lines: Mutex::new(Lines {
                    lines: VecDeque::with_capacity(CAPACITY),
                    next_seq: 0,
                }),
                pushed: watch::Sender::new(0),
            }),
        }
    }
}

impl Ring {
    /// Adds a line (a trailing newline is dropped), pushing out the oldest beyond [`CAPACITY`].
    pub fn push(&self, stream: Stream, bytes: &[u8]) {
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let next_seq = {
            let mut inner = self.lock();
            if inner.lines.len() == CAPACITY {
                inner.lines.pop_front();
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.lines.push_back(Line {
                seq,
                time: SystemTime::now(),
                stream,
                text: String::from_utf8_lossy(bytes).into_owned(),
            });
            inner.next_seq
        };
        self.inner.pushed.send_replace(next_seq);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lines> {
        self.inner
            .lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The sequence number the next line will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// A receiver that changes whenever a line is added.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.pushed.subscribe()
    }

    /// The last `count` lines numbered `from` or later, oldest first.
    pub fn last(&self, count: usize, from: u64) -> Vec<Line> {
        let inner = self.lock();
        let mut lines: Vec<Line> = inner
            .lines
            .iter()
            .rev()
            .take_while(|line| line.seq >= from)
            .take(count)
            .cloned()
            .collect();
        lines.reverse();
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_in_order_with_their_numbers() {
        let ring = Ring::default();
        for n in 0..CAPACITY + 5 {
            let stream = if n % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            ring.push(stream, format!("line {n}\n").as_bytes());
        }
        let all = ring.last(usize::MAX, 0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].text, "line 5");
        assert_eq!(all[0].seq, 5);
        assert_eq!(all[0].stream, Stream::Stderr);
        assert_eq!(all[CAPACITY - 1].text, format!("line {}", CAPACITY + 4));
        assert!(all.windows(2).all(|pair| pair[0].time <= pair[1].time));
        assert_eq!(ring.next_seq(), u64::try_from(CAPACITY).unwrap() + 5);
    }

    #[test]
    fn a_line_shows_its_time_of_day_and_stream() {
        let line = Line {
            seq: 0,
            time: UNIX_EPOCH + std::time::Duration::from_millis((2 * 86_400 + 3723) * 1000 + 45),
            stream: Stream::Stderr,
            text: "boom".to_owned(),
        };
        assert_eq!(line.to_string(), "01:02:03.045 stderr: boom");
    }

    #[test]
    fn last_stops_at_the_first_wanted_number() {
        let ring = Ring::default();
        ring.push(Stream::Stdout, b"earlier run");
        let from = ring.next_seq();
        assert!(ring.last(3, from).is_empty());
        ring.push(Stream::Stderr, b"a");
        ring.push(Stream::Stderr, b"b\n");
        let texts: Vec<String> = ring.last(3, from).into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["a", "b"]);
        let texts: Vec<String> = ring.last(1, 0).into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["b"]);
    }

    #[test]
    fn subscribers_see_each_push() {
        let ring = Ring::default();
        let mut pushed = ring.subscribe();
        assert!(!pushed.has_changed().unwrap());
        ring.push(Stream::Stdout, b"x");
        assert!(pushed.has_changed().unwrap());
        assert_eq!(*pushed.borrow_and_update(), 1);
    }
}
