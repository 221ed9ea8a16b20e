//! Human-readable byte sizes for tables (`1.5 GiB`, `12.0 MiB`).

const KIB: f64 = 1024.0;

/// Formats `bytes` with a binary unit and one decimal.
pub fn human_bytes(bytes: u64) -> String {
    let value = bytes as f64;
    if value >= KIB * KIB * KIB {
        format!("{:.1} GiB", value / (KIB * KIB * KIB))
    } else if value >= KIB * KIB {
        format!("{:.1} MiB", value / (KIB * KIB))
    } else if value >= KIB {
        format!("{:.1} KiB", value / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// Bytes as MiB with one decimal, for table columns.
pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (KIB * KIB))
}

/// Signed MiB/s with one decimal.
pub fn mib_per_s(bytes_per_s: f64) -> String {
    format!("{:+.1}", bytes_per_s / (KIB * KIB))
}

#[cfg(test)]
mod tests {
    //! Unit boundaries.
    use super::*;

    #[test]
    fn picks_the_unit() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(mib(1 << 20), "1.0");
        assert_eq!(mib_per_s(-2.0 * 1048576.0), "-2.0");
    }
}
