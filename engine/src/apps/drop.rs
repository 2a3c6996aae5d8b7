//! The `drop` app: every frame is dropped by policy. The baseline for receive-side benchmarks
//! (it measures RX + recycle cost with no TX) and a safe default while steering is being tested.

use super::{App, Batch, DropReason, Verdict};

/// Drops every frame with [`DropReason::Policy`]. Named `DropAll` so it does not shadow the
/// `Drop` trait.
#[derive(Debug, Default, Clone, Copy)]
pub struct DropAll {
    _private: (),
}

impl DropAll {
    /// A new drop-everything app. It has no state.
    pub const fn new() -> Self {
        DropAll { _private: () }
    }
}

impl App for DropAll {
    fn name(&self) -> &'static str {
        "drop"
    }

    #[inline]
    fn process(&mut self, batch: &mut Batch<'_, '_>) {
        // `Batch::new` already starts every verdict at Drop(Policy); set it anyway so the app's
        // meaning does not hang on that default. No frame is looked at.
        batch.set_all_verdicts(Verdict::Drop(DropReason::Policy));
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn drops_everything_untouched() {
        let mut a = [0u8; 60];
        let mut b = [0xffu8; 1514];
        let mut c: [u8; 0] = [];
        let (a0, b0) = (a, b);
        let mut frames: [&mut [u8]; 3] = [&mut a, &mut b, &mut c];
        let mut verdicts = [Verdict::Tx; 4];
        {
            let mut batch = Batch::new(&mut frames, &mut verdicts);
            // Make sure the app itself sets the verdict, not only the default.
            batch.set_verdict(0, Verdict::Tx);
            let mut app = DropAll::new();
            assert_eq!(app.name(), "drop");
            app.process(&mut batch);
            assert_eq!(batch.verdicts(), [Verdict::Drop(DropReason::Policy); 3]);
        }
        assert_eq!(
            verdicts[3],
            Verdict::Tx,
            "verdicts past the batch are untouched"
        );
        assert_eq!((a, b), (a0, b0));
    }

    fn run(frame: &mut [u8]) -> Verdict {
        let mut frames: [&mut [u8]; 1] = [frame];
        let mut verdicts = [Verdict::Tx];
        let mut batch = Batch::new(&mut frames, &mut verdicts);
        DropAll::new().process(&mut batch);
        batch.verdict(0)
    }

    // The drop app's share of the long property run (`crate::fuzz`): whatever arrives is
    // dropped by policy, byte for byte unchanged.
    proptest::proptest! {
        #![proptest_config(crate::fuzz::config())]

        #[test]
        fn random_bytes_are_dropped_untouched(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut f = bytes.clone();
            proptest::prop_assert_eq!(run(&mut f), Verdict::Drop(DropReason::Policy));
            proptest::prop_assert_eq!(f, bytes);
        }

        /// Valid UDP/TCP frames (reflect's generator) with a few bytes overwritten and maybe cut.
        #[test]
        fn mutated_valid_frames_are_dropped_untouched(
            frame in crate::apps::reflect::test::valid_frame(),
            flips in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()),
                1..6,
            ),
            cut in proptest::option::weighted(0.2, proptest::prelude::any::<proptest::sample::Index>()),
        ) {
            let mut f = frame;
            for (at, v) in flips {
                let i = at.index(f.len());
                f[i] = v;
            }
            if let Some(c) = cut {
                f.truncate(c.index(f.len() + 1));
            }
            let orig = f.clone();
            proptest::prop_assert_eq!(run(&mut f), Verdict::Drop(DropReason::Policy));
            proptest::prop_assert_eq!(f, orig);
        }
    }

    #[test]
    fn empty_batch() {
        let mut frames: [&mut [u8]; 0] = [];
        let mut verdicts: [Verdict; 0] = [];
        let mut batch = Batch::new(&mut frames, &mut verdicts);
        DropAll::default().process(&mut batch);
        assert!(batch.is_empty());
    }
}
