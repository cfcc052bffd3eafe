//! One direction of one connection: the bytes read and not yet written, the state each toxic
//! keeps about this connection, and what the toxics allow next.
//!
//! This is pure logic; the link does the I/O and passes the time in. Toxics only ever decide
//! *when* the head of the queue may be written and how much of it, so a change of toxics can
//! neither drop nor reorder bytes.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use rand::rngs::SmallRng;
use rand::Rng;

use crate::toxic::{Bucket, Latency, Slicer, Stream, Toxic, ToxicKind};

/// Bytes a direction reads ahead of what it has written. Delayed chunks wait here, so reading
/// continues during a latency (no stacking); past this the sender meets TCP backpressure.
pub(crate) const MAX_BUFFERED: usize = 1 << 20;

/// How a connection ends early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Close both sides (FIN).
    Close,
    /// Reset both sides (RST).
    Reset,
}

/// What the link should do next for this direction.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    /// Keep going: read if allowed, write [`Flow::ready`] if allowed, wake up by `wake`.
    Continue {
        read: bool,
        write: bool,
        wake: Option<Instant>,
    },
    /// The stream ended and everything is written: shut the write side down.
    Shutdown,
    /// End the whole connection.
    End(Ending),
}

#[derive(Debug)]
struct Chunk {
    data: Bytes,
    arrived: Instant,
    /// Drawn in [-1, 1) on arrival, so that jitter stays put when toxics change.
    draw: f64,
}

/// What one connection direction remembers about one toxic.
#[derive(Debug)]
struct Applied {
    revision: u64,
    /// The toxicity draw: whether the toxic applies to this connection.
    active: bool,
    /// When it started applying; timers count from here.
    since: Instant,
    /// Bytes written while it applied (limit_data).
    passed: u64,
}

/// The combined effect of the active toxics of one direction.
#[derive(Debug, Default)]
struct Effects {
    latencies: Vec<Latency>,
    /// Bytes/s, the lowest of the bandwidth toxics.
    rate: Option<u64>,
    slicer: Option<Slicer>,
    /// A timeout toxic: neither read nor write.
    hold: bool,
    deadline: Option<(Instant, Ending)>,
    slow_close: Duration,
    /// (toxic id, bytes allowed).
    limits: Vec<(u64, u64)>,
}

impl Effects {
    fn add(&mut self, toxic: &Toxic, since: Instant) {
        match toxic.kind {
            ToxicKind::Noop(_) => {}
            ToxicKind::Latency(l) => self.latencies.push(l),
            ToxicKind::Bandwidth(b) if b.rate > 0 => {
                let rate = b.rate.saturating_mul(1000);
                self.rate = Some(self.rate.map_or(rate, |r| r.min(rate)));
            }
            ToxicKind::Bandwidth(_) => {}
            ToxicKind::SlowClose(s) => self.slow_close = self.slow_close.max(ms(s.delay)),
            ToxicKind::Timeout(t) => {
                self.hold = true;
                if t.timeout > 0 {
                    self.end_at(since + ms(t.timeout), Ending::Close);
                }
            }
            ToxicKind::ResetPeer(r) => self.end_at(since + ms(r.timeout), Ending::Reset),
            ToxicKind::Slicer(s) => {
                self.slicer.get_or_insert(s);
            }
            ToxicKind::LimitData(l) => self.limits.push((toxic.id, l.bytes)),
        }
    }

    fn end_at(&mut self, at: Instant, ending: Ending) {
        if self.deadline.is_none_or(|(d, _)| at < d) {
            self.deadline = Some((at, ending));
        }
    }

    fn delay(&self, draw: f64) -> Duration {
        self.latencies.iter().map(|l| l.delay(draw)).sum()
    }
}

enum Plan {
    Go(usize),
    Wait(Instant),
    Idle,
    Shutdown,
    End(Ending),
}

/// One direction of one connection.
#[derive(Debug)]
pub(crate) struct Flow {
    stream: Stream,
    queue: VecDeque<Chunk>,
    buffered: usize,
    eof: Option<Instant>,
    applied: HashMap<u64, Applied>,
    effects: Effects,
    bucket: Bucket,
    /// The slicer's size for the next write, drawn once so that waiting does not redraw it.
    slice: Option<usize>,
    /// The slicer's pause: no write before this.
    slice_after: Option<Instant>,
    /// Bytes of the head chunk cleared for writing now.
    authorized: usize,
    rng: SmallRng,
}

impl Flow {
    pub(crate) fn new(stream: Stream, now: Instant, rng: SmallRng) -> Flow {
        Flow {
            stream,
            queue: VecDeque::new(),
            buffered: 0,
            eof: None,
            applied: HashMap::new(),
            effects: Effects::default(),
            bucket: Bucket::new(now),
            slice: None,
            slice_after: None,
            authorized: 0,
            rng,
        }
    }

    /// Takes in the proxy's current toxics. New toxics (and updated ones) get their toxicity
    /// draw and start their timers now.
    pub(crate) fn sync(&mut self, toxics: &[Toxic], now: Instant) {
        let mine: Vec<&Toxic> = toxics.iter().filter(|t| t.stream == self.stream).collect();
        self.applied
            .retain(|id, _| mine.iter().any(|t| t.id == *id));
        let mut effects = Effects::default();
        for toxic in mine {
            let applied = self.applied.entry(toxic.id).or_insert(Applied {
                revision: toxic.revision.wrapping_add(1),
                active: false,
                since: now,
                passed: 0,
            });
            if applied.revision != toxic.revision {
                applied.revision = toxic.revision;
                applied.active = self.rng.random::<f32>() < toxic.toxicity;
                applied.since = now;
            }
            if applied.active {
                effects.add(toxic, applied.since);
            }
        }
        self.effects = effects;
        self.slice = None;
    }

    /// Queues bytes just read.
    pub(crate) fn push(&mut self, data: Bytes, now: Instant) {
        if data.is_empty() {
            return;
        }
        self.buffered += data.len();
        let draw = self.rng.random_range(-1.0..1.0);
        self.queue.push_back(Chunk {
            data,
            arrived: now,
            draw,
        });
    }

    /// Records the end of the input.
    pub(crate) fn eof(&mut self, now: Instant) {
        self.eof.get_or_insert(now);
    }

    /// Decides what comes next; may clear the head of the queue for writing.
    pub(crate) fn next(&mut self, now: Instant) -> Next {
        let mut wake = None;
        if let Some((at, ending)) = self.effects.deadline {
            if at <= now {
                return Next::End(ending);
            }
            wake = Some(at);
        }
        if self.authorized == 0 && !self.effects.hold {
            match self.plan(now) {
                Plan::Go(len) => self.authorize(len, now),
                Plan::Wait(at) => wake = Some(wake.map_or(at, |w: Instant| w.min(at))),
                Plan::Idle => {}
                Plan::Shutdown => return Next::Shutdown,
                Plan::End(ending) => return Next::End(ending),
            }
        }
        Next::Continue {
            read: self.eof.is_none() && self.buffered < MAX_BUFFERED && !self.effects.hold,
            write: self.authorized > 0,
            wake,
        }
    }

    /// The bytes cleared for writing now.
    pub(crate) fn ready(&self) -> &[u8] {
        match self.queue.front() {
            Some(head) => &head.data[..self.authorized],
            None => &[],
        }
    }

    /// Records that the first `n` bytes of [`Flow::ready`] were written; says whether that
    /// used up a data limit.
    pub(crate) fn wrote(&mut self, n: usize) -> Option<Ending> {
        let n = n.min(self.authorized);
        self.authorized -= n;
        self.buffered -= n;
        if let Some(head) = self.queue.front_mut() {
            head.data.advance(n);
            if head.data.is_empty() {
                self.queue.pop_front();
            }
        }
        for (id, _) in &self.effects.limits {
            if let Some(applied) = self.applied.get_mut(id) {
                applied.passed += n as u64;
            }
        }
        (self.authorized == 0 && self.allowance() == Some(0)).then_some(Ending::Close)
    }

    fn plan(&mut self, now: Instant) -> Plan {
        let Some(head) = self.queue.front() else {
            return match self.eof {
                Some(at) if at + self.effects.slow_close <= now => Plan::Shutdown,
                Some(at) => Plan::Wait(at + self.effects.slow_close),
                None => Plan::Idle,
            };
        };
        let mut len = head.data.len();
        let mut due = head.arrived + self.effects.delay(head.draw);
        if let Some(allowance) = self.allowance() {
            if allowance == 0 {
                return Plan::End(Ending::Close);
            }
            len = len.min(allowance);
        }
        if let Some(slicer) = self.effects.slicer {
            let rng = &mut self.rng;
            len = len.min(*self.slice.get_or_insert_with(|| slicer.slice_size(rng)));
            if let Some(after) = self.slice_after {
                due = due.max(after);
            }
        }
        if let Some(rate) = self.effects.rate {
            len = len.min(Bucket::max_piece(rate));
            due = due.max(self.bucket.ready_at(len, rate, now));
        }
        if due <= now {
            Plan::Go(len)
        } else {
            Plan::Wait(due)
        }
    }

    fn authorize(&mut self, len: usize, now: Instant) {
        if let Some(rate) = self.effects.rate {
            self.bucket.take(len, rate, now);
        }
        if let Some(slicer) = self.effects.slicer {
            self.slice = None;
            self.slice_after = Some(now + slicer.pause());
        }
        self.authorized = len;
    }

    /// Bytes the tightest data limit still lets through.
    fn allowance(&self) -> Option<usize> {
        self.effects
            .limits
            .iter()
            .map(|(id, bytes)| {
                let passed = self.applied.get(id).map_or(0, |a| a.passed);
                usize::try_from(bytes.saturating_sub(passed)).unwrap_or(usize::MAX)
            })
            .min()
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toxic::{Bandwidth, LimitData, ResetPeer, SlowClose, Timeout};
    use rand::SeedableRng;

    fn flow(t0: Instant) -> Flow {
        Flow::new(Stream::Downstream, t0, SmallRng::seed_from_u64(1))
    }

    fn toxic(id: u64, kind: ToxicKind) -> Toxic {
        Toxic {
            name: format!("t{id}"),
            stream: Stream::Downstream,
            toxicity: 1.0,
            kind,
            id,
            revision: 0,
        }
    }

    /// Runs the flow's clock forward, writing whatever it clears; returns (time, bytes) per
    /// write and how it ended.
    fn drain(flow: &mut Flow, mut now: Instant) -> (Vec<(Instant, Bytes)>, Next) {
        let mut writes = Vec::new();
        loop {
            match flow.next(now) {
                Next::Continue { write: true, .. } => {
                    let bytes = Bytes::copy_from_slice(flow.ready());
                    writes.push((now, bytes.clone()));
                    if let Some(ending) = flow.wrote(bytes.len()) {
                        return (writes, Next::End(ending));
                    }
                }
                Next::Continue { wake: Some(at), .. } => now = at,
                other => return (writes, other),
            }
        }
    }

    fn joined(writes: &[(Instant, Bytes)]) -> Vec<u8> {
        writes.iter().flat_map(|(_, b)| b.iter().copied()).collect()
    }

    #[test]
    fn without_toxics_a_chunk_goes_at_once_whole() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        f.sync(&[], t0);
        f.push(Bytes::from_static(b"hello"), t0);
        let (writes, end) = drain(&mut f, t0);
        assert_eq!(writes, vec![(t0, Bytes::from_static(b"hello"))]);
        assert!(matches!(
            end,
            Next::Continue {
                read: true,
                write: false,
                wake: None
            }
        ));
    }

    #[test]
    fn latency_counts_from_each_chunks_arrival() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        f.sync(
            &[toxic(
                1,
                ToxicKind::Latency(Latency {
                    latency: 100,
                    jitter: 0,
                }),
            )],
            t0,
        );
        for i in 0..20u8 {
            f.push(Bytes::from(vec![i]), t0 + ms(u64::from(i)));
        }
        let (writes, _) = drain(&mut f, t0);
        assert_eq!(writes.len(), 20);
        for (i, (at, bytes)) in writes.iter().enumerate() {
            assert_eq!(bytes[0] as usize, i);
            assert_eq!(*at, t0 + ms(100 + i as u64), "chunk {i} not stacked");
        }
    }

    #[test]
    fn a_timeout_holds_and_its_removal_releases_every_byte() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        f.sync(&[toxic(1, ToxicKind::Timeout(Timeout { timeout: 0 }))], t0);
        f.push(Bytes::from_static(b"abc"), t0);
        assert_eq!(
            f.next(t0),
            Next::Continue {
                read: false,
                write: false,
                wake: None
            }
        );
        f.sync(&[], t0 + ms(500));
        let (writes, _) = drain(&mut f, t0 + ms(500));
        assert_eq!(joined(&writes), b"abc");
    }

    #[test]
    fn a_timeout_with_a_duration_closes_after_it() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        f.sync(&[toxic(1, ToxicKind::Timeout(Timeout { timeout: 50 }))], t0);
        assert_eq!(
            f.next(t0),
            Next::Continue {
                read: false,
                write: false,
                wake: Some(t0 + ms(50))
            }
        );
        assert_eq!(f.next(t0 + ms(50)), Next::End(Ending::Close));
    }

    #[test]
    fn reset_peer_fires_without_traffic() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        f.sync(&[], t0);
        f.sync(
            &[toxic(1, ToxicKind::ResetPeer(ResetPeer { timeout: 30 }))],
            t0 + ms(10),
        );
        assert_ne!(f.next(t0 + ms(39)), Next::End(Ending::Reset));
        assert_eq!(f.next(t0 + ms(40)), Next::End(Ending::Reset));
    }

    #[test]
    fn limit_data_passes_exactly_the_limit_then_closes() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        f.sync(
            &[toxic(1, ToxicKind::LimitData(LimitData { bytes: 5 }))],
            t0,
        );
        f.push(Bytes::from_static(b"abc"), t0);
        f.push(Bytes::from_static(b"defgh"), t0);
        let (writes, end) = drain(&mut f, t0);
        assert_eq!(joined(&writes), b"abcde");
        assert_eq!(end, Next::End(Ending::Close));
    }

    #[test]
    fn limit_data_counts_across_updates() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        let mut limit = toxic(1, ToxicKind::LimitData(LimitData { bytes: 5 }));
        f.sync(std::slice::from_ref(&limit), t0);
        f.push(Bytes::from_static(b"abc"), t0);
        let (writes, _) = drain(&mut f, t0);
        assert_eq!(joined(&writes), b"abc");
        limit.kind = ToxicKind::LimitData(LimitData { bytes: 4 });
        limit.revision = 1;
        f.sync(&[limit], t0);
        f.push(Bytes::from_static(b"xyz"), t0);
        let (writes, end) = drain(&mut f, t0);
        assert_eq!(joined(&writes), b"x");
        assert_eq!(end, Next::End(Ending::Close));
    }

    #[test]
    fn slow_close_delays_the_shutdown_after_the_data() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        f.sync(
            &[toxic(1, ToxicKind::SlowClose(SlowClose { delay: 200 }))],
            t0,
        );
        f.push(Bytes::from_static(b"bye"), t0);
        f.eof(t0);
        let (writes, end) = drain(&mut f, t0);
        assert_eq!(joined(&writes), b"bye");
        assert_eq!(end, Next::Shutdown);
        assert_ne!(f.next(t0 + ms(199)), Next::Shutdown);
    }

    #[test]
    fn zero_toxicity_never_applies() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        let mut t = toxic(1, ToxicKind::Timeout(Timeout { timeout: 0 }));
        t.toxicity = 0.0;
        f.sync(&[t], t0);
        f.push(Bytes::from_static(b"a"), t0);
        let (writes, _) = drain(&mut f, t0);
        assert_eq!(joined(&writes), b"a");
    }

    #[test]
    fn other_streams_toxics_are_ignored() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        let mut t = toxic(1, ToxicKind::Timeout(Timeout { timeout: 0 }));
        t.stream = Stream::Upstream;
        f.sync(&[t], t0);
        f.push(Bytes::from_static(b"a"), t0);
        assert_eq!(joined(&drain(&mut f, t0).0), b"a");
    }

    #[test]
    fn slicer_cuts_and_spaces_writes() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        let slicer = Slicer {
            average_size: 4,
            size_variation: 2,
            delay: 1000,
        };
        f.sync(&[toxic(1, ToxicKind::Slicer(slicer))], t0);
        let data: Vec<u8> = (0..=255).collect();
        f.push(Bytes::from(data.clone()), t0);
        let (writes, _) = drain(&mut f, t0);
        assert_eq!(joined(&writes), data);
        assert!(writes.iter().all(|(_, b)| (1..=6).contains(&b.len())));
        for pair in writes.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= Duration::from_micros(1000));
        }
    }

    #[test]
    fn bandwidth_splits_a_huge_chunk_and_keeps_the_rate() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        // 1 KB/s: pieces of 100 bytes, one megabyte takes about 1000 s.
        f.sync(&[toxic(1, ToxicKind::Bandwidth(Bandwidth { rate: 1 }))], t0);
        let data = vec![7u8; 1 << 20];
        f.push(Bytes::from(data.clone()), t0);
        let (writes, _) = drain(&mut f, t0);
        assert_eq!(joined(&writes), data);
        assert!(writes.iter().all(|(_, b)| b.len() <= 100));
        let took = writes.last().unwrap().0 - t0;
        assert!(
            (took.as_secs_f64() - 1048.576).abs() < 0.01,
            "took {took:?}"
        );
    }

    #[test]
    fn reading_stops_when_the_buffer_is_full() {
        let t0 = Instant::now();
        let mut f = flow(t0);
        f.sync(
            &[toxic(
                1,
                ToxicKind::Latency(Latency {
                    latency: 1000,
                    jitter: 0,
                }),
            )],
            t0,
        );
        f.push(Bytes::from(vec![0u8; MAX_BUFFERED]), t0);
        assert!(matches!(f.next(t0), Next::Continue { read: false, .. }));
    }
}
