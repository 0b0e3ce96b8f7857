//! What a pull shows while it runs. On a terminal, one line per image, redrawn in place as
//! bytes arrive (`NAME: 2/3 layers, 1.4/5.2 MiB`), like `docker pull`; otherwise plain lines,
//! one when an image starts and one when it is done, fit for a log.
//! Runs in: `kiln` on the build host. Writes to standard error.

use std::io::{self, Write};
use std::time::{Duration, Instant};

/// Redraws on a terminal come at most this often.
const REDRAW: Duration = Duration::from_millis(100);

/// The progress of one image's pull.
#[derive(Debug)]
pub struct PullProgress {
    name: String,
    terminal: bool,
    layers: usize,
    layers_done: usize,
    bytes: u64,
    bytes_done: u64,
    drawn: Option<Instant>,
}

impl PullProgress {
    /// Starts showing the pull of `name`.
    pub fn start(name: &str, terminal: bool) -> Self {
        if !terminal {
            eprintln!("pulling {name}");
        }
        Self {
            name: name.to_owned(),
            terminal,
            layers: 0,
            layers_done: 0,
            bytes: 0,
            bytes_done: 0,
            drawn: None,
        }
    }

    /// The image has `layers` layers and `bytes` to fetch in all (layers and config), of which
    /// `cached` bytes are already in the cache.
    pub fn plan(&mut self, layers: usize, bytes: u64, cached: u64) {
        self.layers = layers;
        self.bytes = bytes;
        self.bytes_done = cached;
        self.draw(true);
    }

    /// `count` more bytes arrived.
    pub fn bytes(&mut self, count: u64) {
        self.bytes_done += count;
        self.draw(false);
    }

    /// A download started over: the `count` bytes it had counted are taken back.
    pub fn rewind(&mut self, count: u64) {
        self.bytes_done = self.bytes_done.saturating_sub(count);
    }

    /// One more layer is in the cache.
    pub fn layer_done(&mut self) {
        self.layers_done += 1;
        self.draw(true);
    }

    /// The image is in the cache as `digest`.
    pub fn done(&mut self, digest: &str) {
        if self.terminal {
            self.draw(true);
            eprintln!();
        } else {
            eprintln!(
                "pulled {} ({digest}): {} layers, {}",
                self.name,
                self.layers,
                mib(self.bytes)
            );
        }
    }

    /// `--pull` found the tag naming what the cache has (`digest`).
    pub fn up_to_date(&mut self, digest: &str) {
        if self.terminal {
            eprintln!("\r\x1b[K{}: up to date", self.name);
        } else {
            eprintln!("{} is up to date ({digest})", self.name);
        }
    }

    /// The pull failed: a terminal's line is ended so the error starts on its own.
    pub fn failed(&mut self) {
        if self.terminal && self.drawn.is_some() {
            eprintln!();
        }
    }

    fn draw(&mut self, always: bool) {
        if !self.terminal {
            return;
        }
        let now = Instant::now();
        if !always && self.drawn.is_some_and(|at| now.duration_since(at) < REDRAW) {
            return;
        }
        self.drawn = Some(now);
        eprint!(
            "\r\x1b[K{}: {}/{} layers, {} of {}",
            self.name,
            self.layers_done,
            self.layers,
            mib(self.bytes_done),
            mib(self.bytes)
        );
        let _ = io::stderr().flush();
    }
}

/// `bytes` in MiB, one decimal.
pub fn mib(bytes: u64) -> String {
    // Display only: the precision lost converting to f64 is far below one decimal.
    #[allow(clippy::cast_precision_loss)]
    let value = bytes as f64 / (1024.0 * 1024.0);
    format!("{value:.1} MiB")
}
