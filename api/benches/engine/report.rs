//! Figures, medians and the Markdown table the benchmark prints.

use std::time::Duration;

/// Target of a figure.
#[derive(Clone, Copy)]
pub enum Target {
    /// Engine median at least this share of the baseline median.
    MinRatio(f64),
    /// Engine median at most this value, in the figure's unit.
    MaxValue(f64),
    /// Reported without a target.
    None,
}

/// One row of the result table: the engine's rounds beside its baseline's rounds.
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub engine: Vec<f64>,
    pub baseline_name: String,
    pub baseline: Vec<f64>,
    pub target: Target,
}

impl Figure {
    pub fn ratio(&self) -> Option<f64> {
        let engine = median(&self.engine)?;
        let baseline = median(&self.baseline)?;
        (baseline > 0.0).then(|| engine / baseline)
    }

    fn verdict(&self) -> &'static str {
        let met = match self.target {
            Target::MinRatio(share) => self.ratio().map(|ratio| ratio >= share),
            Target::MaxValue(limit) => median(&self.engine).map(|value| value <= limit),
            Target::None => return "",
        };
        match met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "not measured",
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::MinRatio(share) => format!("≥ {:.0} % of baseline", share * 100.0),
            Target::MaxValue(limit) => format!("≤ {limit:.0} {}", self.unit),
            Target::None => "—".to_string(),
        }
    }
}

/// Returns the median, or `None` for no values. An even count takes the upper middle value, so
/// the median is always a measured round.
pub fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 0.5)
}

/// Returns the value at `share` (0 to 1) of the sorted values, by the nearest-rank method.
pub fn percentile(values: &[f64], share: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((share * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Returns events (or commands) per second.
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Returns the 1-, 5- and 15-minute load averages, for the record of a noisy machine.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

fn format_value(value: Option<f64>) -> String {
    match value {
        Some(value) if value >= 100.0 => format_thousands(value.round() as u64),
        Some(value) => format!("{value:.1}"),
        None => "—".to_string(),
    }
}

fn format_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn format_rounds(values: &[f64]) -> String {
    values.iter().map(|value| format_value(Some(*value))).collect::<Vec<_>>().join(" / ")
}

/// Prints the result table in Markdown, then every round.
pub fn print_table(figures: &[Figure]) {
    println!("| figure | engine (median) | baseline | baseline (median) | engine / baseline | target | result |");
    println!("|---|---|---|---|---|---|---|");
    for figure in figures {
        let ratio = figure.ratio().map_or("—".to_string(), |ratio| format!("{ratio:.2}"));
        println!(
            "| {} | {} {} | {} | {} | {ratio} | {} | {} |",
            figure.name,
            format_value(median(&figure.engine)),
            figure.unit,
            if figure.baseline_name.is_empty() { "—" } else { &figure.baseline_name },
            format_value(median(&figure.baseline)),
            figure.target_text(),
            figure.verdict(),
        );
    }
    println!();
    println!("Rounds (engine; baseline):");
    for figure in figures {
        println!(
            "- {}: {}; {}",
            figure.name,
            format_rounds(&figure.engine),
            if figure.baseline.is_empty() { "—".to_string() } else { format_rounds(&figure.baseline) }
        );
    }
}

