//! Paces a GPU source: a new sample at most every `every` (1 s by default, faster while the
//! guard is above "warn"), the previous one in between, so a fast host loop does not call NVML
//! at its own rate.
use std::time::{Duration, Instant};

use super::{GpuSample, GpuSource, SAMPLE_EVERY};

/// A GPU source sampled at most every `every`.
pub struct Paced {
    source: Box<dyn GpuSource>,
    every: Duration,
    /// When `last` was taken (`None`: never).
    at: Option<Instant>,
    last: GpuSample,
}

impl std::fmt::Debug for Paced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paced")
            .field("source", &self.source.name())
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Paced {
    /// Paces `source` at [`SAMPLE_EVERY`].
    pub fn new(source: Box<dyn GpuSource>) -> Self {
        Self {
            source,
            every: SAMPLE_EVERY,
            at: None,
            last: GpuSample::default(),
        }
    }

    /// Changes the pace (e.g. [`super::SAMPLE_EVERY_UNDER_PRESSURE`] above "warn"); takes
    /// effect at the next call.
    pub fn set_every(&mut self, every: Duration) {
        self.every = every;
    }

    /// The current pace.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// The wrapped source.
    pub fn source(&self) -> &dyn GpuSource {
        self.source.as_ref()
    }

    /// A fresh sample if the last one is at least `every` old (or there is none), else the last.
    pub fn sample_at(&mut self, now: Instant) -> &GpuSample {
        let fresh = self
            .at
            .is_some_and(|at| now.saturating_duration_since(at) < self.every);
        if !fresh {
            self.last = self.source.sample();
            self.at = Some(now);
        }
        &self.last
    }

    /// [`Paced::sample_at`] now.
    pub fn sample(&mut self) -> &GpuSample {
        self.sample_at(Instant::now())
    }

    /// The last sample, or a first one if none was taken yet.
    pub fn last_or_sample(&mut self) -> &GpuSample {
        if self.at.is_none() {
            return self.sample();
        }
        &self.last
    }

    /// A fresh sample now, whatever the pace (a stage mark must see the GPU at the mark).
    pub fn fresh(&mut self) -> &GpuSample {
        self.at = None;
        self.sample()
    }
}

#[cfg(test)]
mod tests {
    //! Pacing.
    use super::*;
    use crate::collect::gpu::{FakeGpuSource, test_support::with_pid};

    #[test]
    fn samples_at_most_every_interval() {
        let fake = FakeGpuSource::new(vec![with_pid(1), with_pid(2), with_pid(3)]);
        let mut paced = Paced::new(Box::new(fake));
        let t0 = Instant::now();
        assert_eq!(paced.sample_at(t0), &with_pid(1));
        assert_eq!(
            paced.sample_at(t0 + Duration::from_millis(500)),
            &with_pid(1)
        );
        assert_eq!(paced.sample_at(t0 + Duration::from_secs(1)), &with_pid(2));
        paced.set_every(crate::collect::gpu::SAMPLE_EVERY_UNDER_PRESSURE);
        assert_eq!(paced.every(), Duration::from_millis(250));
        assert_eq!(
            paced.sample_at(t0 + Duration::from_millis(1250)),
            &with_pid(3)
        );
        assert_eq!(paced.source().name(), "fake");
        let fake = FakeGpuSource::new(vec![with_pid(1), with_pid(2)]);
        let mut paced = Paced::new(Box::new(fake));
        assert_eq!(paced.sample(), &with_pid(1));
        assert_eq!(paced.fresh(), &with_pid(2), "fresh within the interval");
    }
}
