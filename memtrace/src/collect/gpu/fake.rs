//! A scripted GPU source for tests: returns queued samples in order, then repeats the last one.
use std::collections::VecDeque;

use super::{GpuSample, GpuSource};

/// Replays a script of samples; after the last one it keeps returning it (an empty script
/// returns empty samples). Counts how often it was sampled.
#[derive(Clone, Debug, Default)]
pub struct FakeGpuSource {
    script: VecDeque<GpuSample>,
    last: GpuSample,
    calls: u64,
}

impl FakeGpuSource {
    /// A source that returns `script` in order, then its last sample forever.
    pub fn new(script: Vec<GpuSample>) -> Self {
        Self {
            script: script.into(),
            last: GpuSample::default(),
            calls: 0,
        }
    }

    /// Appends a sample to the script.
    pub fn push(&mut self, sample: GpuSample) {
        self.script.push_back(sample);
    }

    /// How many times [`GpuSource::sample`] was called.
    pub fn calls(&self) -> u64 {
        self.calls
    }
}

impl GpuSource for FakeGpuSource {
    fn sample(&mut self) -> GpuSample {
        self.calls += 1;
        if let Some(next) = self.script.pop_front() {
            self.last = next;
        }
        self.last.clone()
    }

    fn name(&self) -> &'static str {
        "fake"
    }
}

#[cfg(test)]
mod tests {
    //! Script order and repetition.
    use super::*;
    use crate::collect::gpu::test_support::with_pid;

    #[test]
    fn replays_in_order_then_repeats_the_last() {
        let mut fake = FakeGpuSource::new(vec![with_pid(1), with_pid(2)]);
        assert_eq!(fake.sample(), with_pid(1));
        assert_eq!(fake.sample(), with_pid(2));
        assert_eq!(fake.sample(), with_pid(2));
        fake.push(with_pid(3));
        assert_eq!(fake.sample(), with_pid(3));
        assert_eq!(fake.calls(), 4);
        assert_eq!(fake.name(), "fake");
    }

    #[test]
    fn empty_script_returns_empty_samples() {
        let mut fake = FakeGpuSource::default();
        assert_eq!(fake.sample(), GpuSample::default());
    }
}
