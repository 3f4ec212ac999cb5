//! Windowed running maximum (Kathleen Nichols' three-sample algorithm, as in
//! Linux `lib/minmax.c`), used for BBR's bottleneck-bandwidth estimate.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Sample {
    time: u64,
    value: u64,
}

/// Maximum of the samples taken over the last `window` time units (BBR uses
/// round trips), in O(1) space and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowedMax {
    window: u64,
    best: Sample,
    second: Sample,
    third: Sample,
}

impl WindowedMax {
    pub(crate) fn new(window: u64) -> Self {
        Self {
            window,
            best: Sample::default(),
            second: Sample::default(),
            third: Sample::default(),
        }
    }

    /// The current maximum (0 before any sample).
    pub(crate) fn get(&self) -> u64 {
        self.best.value
    }

    /// Adds `value` observed at `time` (non-decreasing) and returns the maximum.
    pub(crate) fn update(&mut self, time: u64, value: u64) -> u64 {
        let s = Sample { time, value };
        if value >= self.best.value || time.saturating_sub(self.third.time) > self.window {
            self.best = s;
            self.second = s;
            self.third = s;
            return value;
        }
        if value >= self.second.value {
            self.second = s;
            self.third = s;
        } else if value >= self.third.value {
            self.third = s;
        }
        let dt = time.saturating_sub(self.best.time);
        if dt > self.window {
            // The best sample expired: promote the others.
            self.best = self.second;
            self.second = self.third;
            self.third = s;
            if time.saturating_sub(self.best.time) > self.window {
                self.best = self.second;
                self.second = self.third;
            }
        } else if self.second.time == self.best.time && dt > self.window / 4 {
            // A quarter of the window passed without a second choice: take one.
            self.second = s;
            self.third = s;
        } else if self.third.time == self.second.time && dt > self.window / 2 {
            self.third = s;
        }
        self.best.value
    }
}
