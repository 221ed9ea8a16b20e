//! The report and the exports on the reader's fuzz corpus (crafted traces with valid checksums,
//! see `record::trace::reader::fuzz`), in debug builds where an overflow panics: whatever the
//! reader accepts, the analysis, the text and HTML reports and the three exports finish without
//! a panic, and no byte figure is a wrapped one (sums stay within the reader's bound, and a
//! retained amount is a true difference).
use proptest::prelude::*;

use super::{analyze, html, text};
use crate::{
    analyze::export::{self, Format},
    record::trace::{codec::MAX_TOTAL_BYTES, reader::fuzz},
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reports_and_exports_of_crafted_traces_never_panic_or_wrap(crafted in fuzz::crafted()) {
        let Some(trace) = fuzz::check(&crafted)? else {
            return Ok(());
        };
        let report = analyze(&trace);
        for point in &report.series {
            prop_assert!(point.footprint <= MAX_TOTAL_BYTES && point.rss <= MAX_TOTAL_BYTES);
            prop_assert!(point.gpu.is_none_or(|g| g <= MAX_TOTAL_BYTES));
        }
        for run in &report.stages {
            let retained = i128::from(run.host_end) - i128::from(run.host_start);
            prop_assert_eq!(i128::from(run.host_retained), retained);
        }
        prop_assert!(!text::render(&report, "crafted").is_empty());
        prop_assert!(!html::render(&report).is_empty());
        for format in [Format::Perfetto, Format::Csv, Format::Jsonl] {
            export::write(&trace, format, &mut std::io::sink())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }
}
