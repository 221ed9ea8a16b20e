//! Byte quantities: the binary units, the sizes users type (`16G`, `512MiB`) and the forms
//! tables and logs print (`1.5 GiB`, `12.0` MiB, `+3.2` MiB/s).

/// 2^10 bytes.
pub const KIB: u64 = 1 << 10;
/// 2^20 bytes.
pub const MIB: u64 = 1 << 20;
/// 2^30 bytes.
pub const GIB: u64 = 1 << 30;

/// `bytes` in MiB, for arithmetic and machine-readable output.
pub fn to_mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// `bytes` (or bytes/s; a signed or fractional quantity) in MiB.
pub fn to_mib_f64(bytes: f64) -> f64 {
    bytes / MIB as f64
}

/// `bytes` in GiB.
pub fn to_gib(bytes: u64) -> f64 {
    bytes as f64 / GIB as f64
}

/// Formats `bytes` with a binary unit and one decimal.
pub fn human_bytes(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{:.1} GiB", to_gib(bytes))
    } else if bytes >= MIB {
        format!("{:.1} MiB", to_mib(bytes))
    } else if bytes >= KIB {
        format!("{:.1} KiB", bytes as f64 / KIB as f64)
    } else {
        format!("{bytes} B")
    }
}

/// Bytes as MiB with one decimal, for table columns.
pub fn mib(bytes: u64) -> String {
    format!("{:.1}", to_mib(bytes))
}

/// `value`, or a positive zero when it would print as zero at one decimal: a change of
/// −20 KiB prints as `0.0`, not `-0.0` (formatting still does the rounding).
fn one_decimal(value: f64) -> f64 {
    if value.abs() < 0.05 { 0.0 } else { value }
}

/// A signed quantity of bytes (a change, a rate in bytes/s) as MiB with its sign and one
/// decimal: `+3.2`, `-0.5`, `+0.0`.
pub fn signed_mib(bytes: f64) -> String {
    format!("{:+.1}", one_decimal(to_mib_f64(bytes)))
}

/// A quantity of bytes that may be negative as MiB with one decimal, the sign only when it is
/// negative: `3.2`, `-0.5`, `0.0`.
pub fn mib_f64(bytes: f64) -> String {
    format!("{:.1}", one_decimal(to_mib_f64(bytes)))
}

/// Why a size was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    /// Not a number with an optional unit.
    #[error(
        "invalid size {0:?}: expected a number with an optional unit (16G, 512MiB, 64M, 4096K)"
    )]
    Invalid(String),
    /// Zero or more than 2^64 bytes.
    #[error("size {0:?} is out of range")]
    OutOfRange(String),
}

/// Parses a size: a number (decimals allowed) and an optional unit, case-insensitive. `K`, `M`,
/// `G`, `T` with or without `B` or `iB` are all binary (`16G` = `16GB` = `16GiB` = 16 × 2^30,
/// as in fallocate and mkswap); no unit or `B` means bytes. Fractions of a byte are dropped.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let invalid = || SizeError::Invalid(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(invalid()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits_only(whole) || !digits_only(fraction) {
        return Err(invalid());
    }
    let out_of_range = || SizeError::OutOfRange(text.to_owned());
    let scale = 1u128 << shift;
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| out_of_range())?
    };
    // At most 12 fraction digits matter (2^40 < 10^13); more would only overflow.
    let fraction = fraction.get(..fraction.len().min(12)).unwrap_or_default();
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| invalid())?
    };
    let denominator = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| invalid())?);
    let bytes = whole
        .checked_mul(scale)
        .and_then(|b| b.checked_add(fraction_value * scale / denominator))
        .ok_or_else(out_of_range)?;
    match u64::try_from(bytes) {
        Ok(0) | Err(_) => Err(out_of_range()),
        Ok(bytes) => Ok(bytes),
    }
}

#[cfg(test)]
mod tests {
    //! Unit boundaries and the size spellings users type.
    use super::*;

    #[test]
    fn picks_the_unit() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * MIB), "3.0 MiB");
        assert_eq!(human_bytes(5 * GIB), "5.0 GiB");
        assert_eq!(mib(MIB), "1.0");
        assert_eq!(signed_mib(-2.0 * MIB as f64), "-2.0");
        assert_eq!(signed_mib(0.25 * MIB as f64), "+0.2");
        assert_eq!(signed_mib(-20.0 * KIB as f64), "+0.0", "no negative zero");
        assert_eq!(mib_f64(-20.0 * KIB as f64), "0.0");
        assert_eq!(mib_f64(-1.5 * MIB as f64), "-1.5");
        assert_eq!(to_mib(3 * MIB / 2), 1.5);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("16G"), Ok(16 * GIB));
        assert_eq!(parse_size("16g"), Ok(16 * GIB));
        assert_eq!(parse_size("16GB"), Ok(16 * GIB));
        assert_eq!(parse_size("64M"), Ok(64 * MIB));
        assert_eq!(parse_size("512MiB"), Ok(512 * MIB));
        assert_eq!(parse_size("4096K"), Ok(4 * MIB));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("1.5G"), Ok(3 * GIB / 2));
        assert_eq!(parse_size(".5M"), Ok(MIB / 2));
        assert_eq!(parse_size("1048576"), Ok(MIB));
        assert_eq!(parse_size(" 2 G "), Ok(2 * GIB));
        assert_eq!(parse_size("100B"), Ok(100));
    }

    #[test]
    fn sizes_refused() {
        for bad in [
            "", "G", "16X", "-1G", "1.2.3G", "sixteen", "16 GiBs", ".", "1e3",
        ] {
            assert!(
                matches!(parse_size(bad), Err(SizeError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(parse_size("0"), Err(SizeError::OutOfRange(_))));
        assert!(matches!(
            parse_size("0.0001K"),
            Err(SizeError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_size("99999999T"),
            Err(SizeError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_size("999999999999999999999999999999999999999999G"),
            Err(SizeError::OutOfRange(_))
        ));
        let message = parse_size("16X")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!message.contains('\n') && message.contains("16X"));
    }
}
