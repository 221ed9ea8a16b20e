//! Pure swap arithmetic: how much swap this much RAM should have (the recommendation table and how
//! it is extended beyond its rows), and the advice for a cgroup's (a container's) swap. Sizes users
//! type are parsed by [`crate::units::parse_size`].
use serde::Serialize;

use crate::units::{GIB, MIB};

/// How close (bytes) swap may fall short of a threshold and still count as meeting it: a swap
/// file's first page holds its header, so a 16 GiB file shows as 16 GiB − 4 KiB in /proc/swaps.
const TOLERANCE: u64 = MIB;

/// The table rows, in GiB: (RAM, recommended low, recommended high, minimum).
const TABLE: [(u64, u64, u64, u64); 3] = [(32, 16, 16, 8), (64, 16, 32, 8), (128, 32, 32, 16)];

/// The rule [`recommend`] applies, in words; printed with every recommendation.
pub const RULE: &str = "table: 32 GiB RAM -> 16 GiB (min 8), 64 -> 16-32 (min 8), \
     128 -> 32 (min 16); between rows: linear in RAM; below 32 GiB: half the RAM (min a \
     quarter), at least 1 GiB (min 512 MiB); above 128 GiB: held at 32 GiB (min 16)";

/// The swap recommended for one amount of RAM, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Recommendation {
    /// The RAM the recommendation is for (MemTotal).
    pub ram_bytes: u64,
    /// Lower end of the recommended range.
    pub recommended_low_bytes: u64,
    /// Upper end of the recommended range (equal to the lower end outside 32–128 GiB).
    pub recommended_high_bytes: u64,
    /// Less than this is a problem, not a preference.
    pub minimum_bytes: u64,
}

/// Recommends swap for `ram_bytes` of RAM.
///
/// The rule (also in [`RULE`]):
/// * the table: 32 GiB RAM → 16 GiB (minimum 8); 64 GiB → 16–32 GiB (minimum 8); 128 GiB →
///   32 GiB (minimum 16);
/// * between two rows each of the three numbers is interpolated linearly in RAM (96 GiB RAM →
///   24–32 GiB, minimum 12);
/// * below 32 GiB the 32 GiB row's ratios carry on: half the RAM recommended, a quarter as the
///   minimum, but never less than 1 GiB recommended and 512 MiB minimum (small machines still
///   need room to park cold pages);
/// * above 128 GiB the 128 GiB row holds: swap on a big host parks cold anonymous pages and
///   absorbs spikes; more of it only prolongs thrashing before the OOM killer acts.
///
/// Results are rounded to whole MiB.
pub fn recommend(ram_bytes: u64) -> Recommendation {
    let gib = |n: u64| n * GIB;
    let (low, high, minimum) = match TABLE
        .windows(2)
        .find(|pair| ram_bytes >= gib(pair[0].0) && ram_bytes <= gib(pair[1].0))
    {
        Some([a, b]) => {
            let lerp = |from: u64, to: u64| interpolate(ram_bytes, gib(a.0), gib(b.0), from, to);
            (
                lerp(gib(a.1), gib(b.1)),
                lerp(gib(a.2), gib(b.2)),
                lerp(gib(a.3), gib(b.3)),
            )
        }
        _ if ram_bytes < gib(TABLE[0].0) => {
            let half = (ram_bytes / 2).max(GIB);
            let quarter = (ram_bytes / 4).max(GIB / 2);
            (half, half, quarter)
        }
        _ => {
            let (_, low, high, minimum) = TABLE[TABLE.len() - 1];
            (gib(low), gib(high), gib(minimum))
        }
    };
    Recommendation {
        ram_bytes,
        recommended_low_bytes: round_mib(low),
        recommended_high_bytes: round_mib(high),
        minimum_bytes: round_mib(minimum),
    }
}

/// One line of advice for a cgroup's swap: swap comes from the host, and the cgroup's allowance
/// (`memory.swap.max`) says how much of it the cgroup may use. Inside a container neither can
/// be changed from where memtrace runs, so the advice is for the provider.
pub fn cgroup_advice(
    verdict: SwapVerdict,
    host_bytes: u64,
    allowance: Option<u64>,
    in_container: bool,
) -> String {
    if verdict == SwapVerdict::Ok {
        return "swap this cgroup may use meets the recommendation for its limit".to_owned();
    }
    let who = if in_container {
        "swap cannot be set up from inside a container (swapon needs CAP_SYS_ADMIN in the \
         host's namespace): ask the provider, or whoever runs the host, to "
    } else {
        ""
    };
    match allowance {
        Some(max) if host_bytes > max => format!(
            "the host has {} of swap but this cgroup may use only {} (memory.swap.max; v1: \
             memory.memsw.limit_in_bytes): {who}raise it",
            crate::units::human_bytes(host_bytes),
            crate::units::human_bytes(max)
        ),
        _ if host_bytes == 0 => format!(
            "the host has no swap: {who}set it up on the host (`memtrace swap setup` there) and \
             let this cgroup use it (memory.swap.max; v1: memory.memsw.limit_in_bytes)"
        ),
        _ => format!(
            "{} of swap is short of the recommendation for this limit: {who}add swap on the host \
             (`memtrace swap setup` there)",
            crate::units::human_bytes(host_bytes)
        ),
    }
}

/// The value at `x` of the line through (`x0`, `y0`) and (`x1`, `y1`), for `x0 <= x <= x1`.
fn interpolate(x: u64, x0: u64, x1: u64, y0: u64, y1: u64) -> u64 {
    if x1 <= x0 {
        return y0;
    }
    let t = u128::from(x.saturating_sub(x0));
    let span = u128::from(x1 - x0);
    let value = if y1 >= y0 {
        u128::from(y0) + u128::from(y1 - y0) * t / span
    } else {
        u128::from(y0) - u128::from(y0 - y1) * t / span
    };
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Rounds to the nearest MiB.
fn round_mib(bytes: u64) -> u64 {
    bytes.saturating_add(MIB / 2) / MIB * MIB
}

/// How the swap present compares with the recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapVerdict {
    /// At least the low end of the recommended range.
    Ok,
    /// Between the minimum and the recommended range.
    BelowRecommended,
    /// Some swap, but less than the minimum.
    BelowMinimum,
    /// No swap at all.
    None,
}

impl Recommendation {
    /// Judges `swap_bytes` of active swap.
    pub fn verdict(&self, swap_bytes: u64) -> SwapVerdict {
        let meets = |threshold: u64| swap_bytes.saturating_add(TOLERANCE) >= threshold;
        if swap_bytes == 0 {
            SwapVerdict::None
        } else if meets(self.recommended_low_bytes) {
            SwapVerdict::Ok
        } else if meets(self.minimum_bytes) {
            SwapVerdict::BelowRecommended
        } else {
            SwapVerdict::BelowMinimum
        }
    }

    /// The size to suggest for `swap setup`: the low end of the range rounded up to whole GiB
    /// (MemTotal is a little under the installed RAM, so 32 GiB machines get 16G, not 15.6G).
    pub fn setup_size_bytes(&self) -> u64 {
        self.recommended_low_bytes.div_ceil(GIB).max(1) * GIB
    }
}

#[cfg(test)]
mod tests {
    //! The recommendation table and its extension beyond the rows.
    use super::*;

    fn gib_rec(ram_gib: u64) -> (u64, u64, u64) {
        let r = recommend(ram_gib * GIB);
        (
            r.recommended_low_bytes,
            r.recommended_high_bytes,
            r.minimum_bytes,
        )
    }

    #[test]
    fn table_rows_exact() {
        assert_eq!(gib_rec(32), (16 * GIB, 16 * GIB, 8 * GIB));
        assert_eq!(gib_rec(64), (16 * GIB, 32 * GIB, 8 * GIB));
        assert_eq!(gib_rec(128), (32 * GIB, 32 * GIB, 16 * GIB));
    }

    #[test]
    fn interpolates_between_rows() {
        assert_eq!(gib_rec(48), (16 * GIB, 24 * GIB, 8 * GIB));
        assert_eq!(gib_rec(96), (24 * GIB, 32 * GIB, 12 * GIB));
    }

    #[test]
    fn extends_below_and_above() {
        assert_eq!(gib_rec(16), (8 * GIB, 8 * GIB, 4 * GIB));
        assert_eq!(gib_rec(24), (12 * GIB, 12 * GIB, 6 * GIB));
        assert_eq!(gib_rec(1), (GIB, GIB, GIB / 2));
        assert_eq!(gib_rec(0), (GIB, GIB, GIB / 2));
        assert_eq!(gib_rec(256), (32 * GIB, 32 * GIB, 16 * GIB));
        assert_eq!(gib_rec(2048), (32 * GIB, 32 * GIB, 16 * GIB));
        let big = recommend(u64::MAX);
        assert_eq!(big.recommended_low_bytes, 32 * GIB);
    }

    #[test]
    fn rounds_to_mib_and_suggests_whole_gib() {
        // A "32 GiB" machine reports a little less as MemTotal.
        let r = recommend(32 * GIB - 700 * MIB);
        assert_eq!(r.recommended_low_bytes % MIB, 0);
        assert!(r.recommended_low_bytes < 16 * GIB);
        assert_eq!(r.setup_size_bytes(), 16 * GIB);
        assert_eq!(recommend(24 * GIB - 400 * MIB).setup_size_bytes(), 12 * GIB);
    }

    #[test]
    fn verdicts() {
        let r = recommend(32 * GIB);
        assert_eq!(r.verdict(0), SwapVerdict::None);
        assert_eq!(r.verdict(4 * GIB), SwapVerdict::BelowMinimum);
        assert_eq!(r.verdict(8 * GIB), SwapVerdict::BelowRecommended);
        // A 16 GiB swap file shows 4 KiB short: still OK.
        assert_eq!(r.verdict(16 * GIB - 4096), SwapVerdict::Ok);
        assert_eq!(r.verdict(64 * GIB), SwapVerdict::Ok);
    }
}
