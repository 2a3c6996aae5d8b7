//! The ICMP error rate limit: one token bucket per app instance (so per worker).

use std::time::Instant;

/// How many ICMP errors a worker may send: `per_sec` on average, up to `burst` at once.
///
/// `per_sec = 0` or `burst = 0` sends none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpLimit {
    /// Tokens added per second.
    pub per_sec: u32,
    /// Most tokens the bucket holds (and holds at start).
    pub burst: u32,
}

impl Default for IcmpLimit {
    /// 100 errors a second, bursts of 50: about what Linux allows per host by default
    /// (`net.ipv4.icmp_msgs_per_sec = 1000`, burst 50), shared here per worker.
    fn default() -> Self {
        IcmpLimit {
            per_sec: 100,
            burst: 50,
        }
    }
}

/// A token is this many credit units; a second adds `per_sec` tokens, i.e. `per_sec` units per
/// nanosecond, so refilling is one multiplication and no division or rounding.
const UNIT: u64 = 1_000_000_000;

/// A token bucket in integer credit units (see [`UNIT`]). Starts full.
#[derive(Clone, Debug)]
pub(in crate::apps) struct TokenBucket {
    limit: IcmpLimit,
    credit: u64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub(in crate::apps) fn new(limit: IcmpLimit) -> Self {
        TokenBucket {
            limit,
            credit: Self::cap(limit),
            last: None,
        }
    }

    fn cap(limit: IcmpLimit) -> u64 {
        u64::from(limit.burst) * UNIT
    }

    /// Add the credit earned since the last refill (none on the first), up to the burst.
    pub(in crate::apps) fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let ns =
                u64::try_from(now.saturating_duration_since(last).as_nanos()).unwrap_or(u64::MAX);
            let earned = ns.saturating_mul(u64::from(self.limit.per_sec));
            self.credit = self
                .credit
                .saturating_add(earned)
                .min(Self::cap(self.limit));
        }
        // A clock that went backwards earns nothing and does not move `last` back.
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
    }

    /// Whether a token is there (without taking it).
    #[inline]
    pub(in crate::apps) fn ready(&self) -> bool {
        self.credit >= UNIT
    }

    /// Take a token; call only after [`TokenBucket::ready`] said yes.
    #[inline]
    pub(in crate::apps) fn take(&mut self) {
        self.credit = self.credit.saturating_sub(UNIT);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::time::Duration;

    fn drain(b: &mut TokenBucket) -> u32 {
        let mut n = 0;
        while b.ready() {
            b.take();
            n += 1;
        }
        n
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(IcmpLimit {
            per_sec: 100,
            burst: 50,
        });
        b.refill(t0);
        assert_eq!(
            drain(&mut b),
            50,
            "a full burst at one instant, not one more"
        );
        b.refill(t0);
        assert!(!b.ready());
        b.refill(t0 + Duration::from_millis(9));
        assert!(!b.ready(), "0.9 of a token");
        b.refill(t0 + Duration::from_millis(10));
        assert_eq!(drain(&mut b), 1, "10 ms at 100/s is one token");
        b.refill(t0 + Duration::from_millis(255));
        assert_eq!(drain(&mut b), 24, "245 ms more: 24.5 tokens");
        b.refill(t0 + Duration::from_secs(3600));
        assert_eq!(
            drain(&mut b),
            50,
            "an idle hour refills to the burst, no more"
        );
        // A clock that steps back earns nothing.
        b.refill(t0);
        assert!(!b.ready());
    }

    #[test]
    fn zero_limits_send_nothing() {
        let t0 = Instant::now();
        for limit in [
            IcmpLimit {
                per_sec: 0,
                burst: 10,
            },
            IcmpLimit {
                per_sec: 10,
                burst: 0,
            },
        ] {
            let mut b = TokenBucket::new(limit);
            b.refill(t0);
            let first = drain(&mut b);
            b.refill(t0 + Duration::from_secs(10));
            assert_eq!(first + drain(&mut b), if limit.burst == 0 { 0 } else { 10 });
        }
        let mut huge = TokenBucket::new(IcmpLimit {
            per_sec: u32::MAX,
            burst: u32::MAX,
        });
        huge.refill(t0);
        huge.take();
        huge.refill(t0 + Duration::from_secs(1 << 40));
        assert!(huge.ready());
    }
}
