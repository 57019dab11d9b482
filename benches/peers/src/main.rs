//! anybatch next to other Rust DataLoaders (ultra-batch, dataloader,
//! async-graphql's `DataLoader`) on the same workloads, the same backend and
//! the same tokio runtime. Prints a markdown report to stdout; progress goes
//! to stderr.
//!
//! Run: `cargo run --release --manifest-path benches/peers/Cargo.toml [-- --quick]`

mod alloc;
mod subjects;
mod workloads;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::runtime::Runtime;

use subjects::{
    Anybatch, AnybatchWrites, AsyncGraphql, Dataloader, Fetched, Subject, Tuning, UltraBatch,
    UltraBatchWrites, WriteSubject, BATCH,
};
use workloads::{Gather, Sample};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting::new();

/// The libraries, in the table's column order.
const LIBRARIES: [&str; 4] = [
    Anybatch::NAME,
    UltraBatch::NAME,
    Dataloader::NAME,
    AsyncGraphql::NAME,
];

/// A run taking longer than this is abandoned and reported as timed out.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// How much work each workload does.
struct Config {
    quick: bool,
    /// How the tasks of the spawned-burst workload are awaited.
    gather: Gather,
    /// Measured runs per workload (after one warm-up run); the median counts.
    runs: usize,
    hit_known: u64,
    hit_loads: u64,
    burst_keys: u64,
    dup_loads: u64,
    dup_distinct: u64,
    many_calls: usize,
    many_keys_per_call: usize,
    many_key_space: u64,
    latency_loads: u64,
    latency_runs: usize,
    writes: u64,
}

impl Config {
    fn new(quick: bool, gather: Gather) -> Self {
        Self {
            quick,
            gather,
            runs: if quick { 3 } else { 9 },
            hit_known: 10_000,
            hit_loads: 200_000,
            burst_keys: 10_000,
            dup_loads: 10_000,
            dup_distinct: 100,
            many_calls: 1_000,
            many_keys_per_call: 50,
            many_key_space: 10_000,
            latency_loads: if quick { 1_000 } else { 10_000 },
            latency_runs: if quick { 1 } else { 3 },
            writes: 10_000,
        }
    }
}

/// How a row's time is shown.
#[derive(Clone, Copy)]
enum Unit {
    /// Nanoseconds per item, over this many items.
    NsPer(&'static str, u64),
    /// Microseconds for the whole run.
    MicrosTotal,
    /// Per-load p50 and p99, in microseconds.
    Latency,
}

/// One library's result on one workload.
enum Outcome {
    Done { sample: Sample, peak_bytes: usize },
    NotApplicable(String),
}

struct Row {
    title: String,
    /// What an ideal loader would fetch.
    ideal: String,
    unit: Unit,
    outcomes: Vec<Outcome>,
}

fn main() {
    const USAGE: &str = "usage: anybatch-peers [--quick] [--gather in-order|joinset|join-all]\n  \
        --quick   fewer runs, for a CI smoke pass\n  \
        --gather  how row 2b awaits its spawned tasks (default in-order)";
    let mut quick = false;
    let mut gather = Gather::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--gather" => {
                let name = args.next().unwrap_or_default();
                match Gather::NAMES.iter().find(|(known, _)| *known == name) {
                    Some((_, chosen)) => gather = *chosen,
                    None => {
                        eprintln!("unknown --gather {name:?}\n{USAGE}");
                        std::process::exit(2);
                    }
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let config = Config::new(quick, gather);
    let load_before = load_average();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime");

    let rows = vec![
        hit_path_row(&runtime, &config),
        burst_row(&runtime, &config, false),
        burst_row(&runtime, &config, true),
        duplicates_row(&runtime, &config),
        many_row(&runtime, &config),
        latency_row(&runtime, &config, Tuning::LowLatency),
        latency_row(&runtime, &config, Tuning::Unbatched),
        writes_row(&runtime, &config),
    ];

    let load = format!("{load_before} before, {} after", load_average());
    print!("{}", report(&config, &rows, &load));
}

// ------------------------------------------------------------- measuring

/// Runs `run` once to warm up, then `runs` times, each as a task on the
/// runtime, and keeps the median run (by time, or by p50 for latency). The
/// peak is the most memory in use at once above `baseline`, over all runs.
fn measure<F, Fut>(runtime: &Runtime, runs: usize, baseline: usize, mut run: F) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Sample> + Send + 'static,
{
    let mut samples = Vec::with_capacity(runs);
    for attempt in 0..=runs {
        let mut task = runtime.spawn(run());
        // The timer is made inside the runtime: it needs its time driver.
        let finished = runtime.block_on(async { tokio::time::timeout(RUN_LIMIT, &mut task).await });
        match finished {
            Ok(Ok(sample)) if attempt > 0 => samples.push(sample),
            Ok(Ok(_warm_up)) => {}
            Ok(Err(error)) => return Outcome::NotApplicable(failure(error)),
            Err(_) => {
                task.abort();
                return Outcome::NotApplicable(format!(
                    "timed out (a run took over {RUN_LIMIT:?})"
                ));
            }
        }
    }
    let peak_bytes = ALLOC.peak().saturating_sub(baseline);
    samples.sort_by_key(|sample| sample.latency.map_or(sample.elapsed, |latency| latency.p50));
    Outcome::Done {
        sample: samples[samples.len() / 2],
        peak_bytes,
    }
}

/// Why a run's task failed, from its panic message.
fn failure(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return format!("run cancelled: {error}");
    }
    let payload = error.into_panic();
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    format!("panicked: {message}")
}

fn progress(workload: &str, library: &str) {
    eprintln!("measuring {library}: {workload}");
}

/// A row where every library runs the same workload function with one
/// argument. (Four closures rather than a generic, since Rust has no
/// generic closures.)
#[allow(clippy::too_many_arguments)]
fn loads_row<A, B, C, D, FA, FB, FC, FD>(
    runtime: &Runtime,
    config: &Config,
    title: String,
    ideal: String,
    unit: Unit,
    anybatch: A,
    ultra_batch: B,
    dataloader: C,
    async_graphql: D,
    argument: u64,
) -> Row
where
    A: Fn(u64) -> FA,
    B: Fn(u64) -> FB,
    C: Fn(u64) -> FC,
    D: Fn(u64) -> FD,
    FA: Future<Output = Sample> + Send + 'static,
    FB: Future<Output = Sample> + Send + 'static,
    FC: Future<Output = Sample> + Send + 'static,
    FD: Future<Output = Sample> + Send + 'static,
{
    let runs = match unit {
        Unit::Latency => config.latency_runs,
        _ => config.runs,
    };
    let mut outcomes = Vec::new();
    progress(&title, LIBRARIES[0]);
    outcomes.push(measure(runtime, runs, ALLOC.reset_peak(), || {
        anybatch(argument)
    }));
    progress(&title, LIBRARIES[1]);
    outcomes.push(measure(runtime, runs, ALLOC.reset_peak(), || {
        ultra_batch(argument)
    }));
    progress(&title, LIBRARIES[2]);
    outcomes.push(measure(runtime, runs, ALLOC.reset_peak(), || {
        dataloader(argument)
    }));
    progress(&title, LIBRARIES[3]);
    outcomes.push(measure(runtime, runs, ALLOC.reset_peak(), || {
        async_graphql(argument)
    }));
    Row {
        title,
        ideal,
        unit,
        outcomes,
    }
}

fn hit_path_row(runtime: &Runtime, config: &Config) -> Row {
    fn one<S: Subject>(runtime: &Runtime, config: &Config, title: &str) -> Outcome {
        progress(title, S::NAME);
        // The peak includes the preloaded identity map.
        let baseline = ALLOC.reset_peak();
        let known = config.hit_known;
        let setup = runtime.spawn(workloads::preloaded::<S>(known));
        let (loader, counts) = match runtime.block_on(setup) {
            Ok(preloaded) => preloaded,
            Err(error) => return Outcome::NotApplicable(failure(error)),
        };
        let loads = config.hit_loads;
        measure(runtime, config.runs, baseline, || {
            workloads::hit_path(loader.clone(), counts.clone(), known, loads)
        })
    }
    let title = format!(
        "1. hit path: {} sequential loads of {} preloaded keys, one task",
        config.hit_loads, config.hit_known
    );
    Row {
        outcomes: vec![
            one::<Anybatch>(runtime, config, &title),
            one::<UltraBatch>(runtime, config, &title),
            one::<Dataloader>(runtime, config, &title),
            one::<AsyncGraphql>(runtime, config, &title),
        ],
        title,
        ideal: "0 in 0".into(),
        unit: Unit::NsPer("ns/load", config.hit_loads),
    }
}

fn burst_row(runtime: &Runtime, config: &Config, spawned: bool) -> Row {
    let keys = config.burst_keys;
    let ideal = format!("{keys} in {}", keys.div_ceil(BATCH as u64));
    let unit = Unit::NsPer("ns/key", keys);
    if spawned {
        let gather = config.gather;
        let awaited = match gather {
            Gather::InOrder => "handles awaited in spawn order",
            Gather::JoinSet => "a `JoinSet` drained",
            Gather::JoinAll => "`join_all` over the handles",
        };
        loads_row(
            runtime,
            config,
            format!(
                "2b. burst miss: {keys} distinct keys, one `tokio::spawn`ed task per load, \
                 {awaited} (`--gather {}`)",
                gather.name()
            ),
            ideal,
            unit,
            move |keys| workloads::burst_spawned::<Anybatch>(keys, gather),
            move |keys| workloads::burst_spawned::<UltraBatch>(keys, gather),
            move |keys| workloads::burst_spawned::<Dataloader>(keys, gather),
            move |keys| workloads::burst_spawned::<AsyncGraphql>(keys, gather),
            keys,
        )
    } else {
        loads_row(
            runtime,
            config,
            format!("2a. burst miss: {keys} distinct keys, `join_all` in one task"),
            ideal,
            unit,
            workloads::burst_joined::<Anybatch>,
            workloads::burst_joined::<UltraBatch>,
            workloads::burst_joined::<Dataloader>,
            workloads::burst_joined::<AsyncGraphql>,
            keys,
        )
    }
}

fn duplicates_row(runtime: &Runtime, config: &Config) -> Row {
    let distinct = config.dup_distinct;
    loads_row(
        runtime,
        config,
        format!(
            "3. duplicate-heavy: {} concurrent loads (`join_all`) over {distinct} distinct keys",
            config.dup_loads
        ),
        format!("{distinct} in {}", distinct.div_ceil(BATCH as u64)),
        Unit::MicrosTotal,
        move |loads| workloads::duplicates::<Anybatch>(loads, distinct),
        move |loads| workloads::duplicates::<UltraBatch>(loads, distinct),
        move |loads| workloads::duplicates::<Dataloader>(loads, distinct),
        move |loads| workloads::duplicates::<AsyncGraphql>(loads, distinct),
        config.dup_loads,
    )
}

/// `calls` lists of `per_call` keys below `space`, from a fixed-seed LCG.
fn many_calls(calls: usize, per_call: usize, space: u64) -> Vec<Vec<u64>> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        // Knuth's MMIX constants; the high bits are the well-mixed ones.
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % space
    };
    (0..calls)
        .map(|_| (0..per_call).map(|_| next()).collect())
        .collect()
}

fn many_row(runtime: &Runtime, config: &Config) -> Row {
    let calls = Arc::new(many_calls(
        config.many_calls,
        config.many_keys_per_call,
        config.many_key_space,
    ));
    let distinct = calls.iter().flatten().collect::<HashSet<_>>().len() as u64;
    let title = format!(
        "4. load_many: {} concurrent calls of {} keys (LCG over 0..{}), `join_all`",
        config.many_calls, config.many_keys_per_call, config.many_key_space
    );
    let (a, b, c, d) = (calls.clone(), calls.clone(), calls.clone(), calls);
    loads_row(
        runtime,
        config,
        title,
        format!("{distinct} in {}", distinct.div_ceil(BATCH as u64)),
        Unit::MicrosTotal,
        move |_| workloads::many::<Anybatch>(a.clone()),
        move |_| workloads::many::<UltraBatch>(b.clone()),
        move |_| workloads::many::<Dataloader>(c.clone()),
        move |_| workloads::many::<AsyncGraphql>(d.clone()),
        0,
    )
}

fn latency_row(runtime: &Runtime, config: &Config, tuning: Tuning) -> Row {
    let title = match tuning {
        Tuning::Unbatched => {
            "5b. the same with batch size 1 (batching off: a load is dispatched as it arrives)"
                .to_string()
        }
        _ => format!(
            "5. single-load latency, idle loader: {} sequential loads of distinct keys, \
             lowest-latency settings",
            config.latency_loads
        ),
    };
    loads_row(
        runtime,
        config,
        title,
        format!("{0} in {0}", config.latency_loads),
        Unit::Latency,
        move |loads| workloads::latency::<Anybatch>(tuning, loads),
        move |loads| workloads::latency::<UltraBatch>(tuning, loads),
        move |loads| workloads::latency::<Dataloader>(tuning, loads),
        move |loads| workloads::latency::<AsyncGraphql>(tuning, loads),
        config.latency_loads,
    )
}

fn writes_row(runtime: &Runtime, config: &Config) -> Row {
    fn one<W: WriteSubject>(runtime: &Runtime, config: &Config, title: &str) -> Outcome {
        progress(title, W::NAME);
        let values = config.writes;
        measure(runtime, config.runs, ALLOC.reset_peak(), || {
            workloads::writes::<W>(values)
        })
    }
    let title = format!(
        "6. executor: {} concurrent `execute(v)` (`join_all`)",
        config.writes
    );
    let none = "n/a: no batched-write API (loads only)";
    Row {
        outcomes: vec![
            one::<AnybatchWrites>(runtime, config, &title),
            one::<UltraBatchWrites>(runtime, config, &title),
            Outcome::NotApplicable(none.into()),
            Outcome::NotApplicable(none.into()),
        ],
        title,
        ideal: format!(
            "{} in {}",
            config.writes,
            config.writes.div_ceil(BATCH as u64)
        ),
        unit: Unit::NsPer("ns/value", config.writes),
    }
}

// -------------------------------------------------------------- reporting

fn report(config: &Config, rows: &[Row], load: &str) -> String {
    let mut out = String::new();
    let mode = if config.quick {
        format!("quick ({} runs per workload, median)", config.runs)
    } else {
        format!("full ({} runs per workload, median)", config.runs)
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(out, "# anybatch and its peers\n");
    let _ = writeln!(out, "- machine: {cores} CPUs (nproc), {}", cpu_model());
    let _ = writeln!(out, "- load average (1, 5, 15 min): {load}");
    let _ = writeln!(out, "- date: {}", utc_now());
    let _ = writeln!(out, "- rustc: {}", env!("PEERS_RUSTC_VERSION"));
    let _ = writeln!(out, "- crates: {}", env!("PEERS_CRATE_VERSIONS"));
    let _ = writeln!(
        out,
        "- setup: one tokio multi-thread runtime, 2 workers; batch size {BATCH} for every loader; \
         instant in-memory backend `value = key * 2`; mode: {mode}\n"
    );

    let _ = write!(out, "| workload | ideal: keys in batches |");
    for library in LIBRARIES {
        let _ = write!(
            out,
            " {library}: time | {library}: keys in batches (mean, max) | {library}: peak |"
        );
    }
    let _ = writeln!(out, " anybatch / best peer |");
    let _ = write!(out, "|---|---|");
    for _ in LIBRARIES {
        let _ = write!(out, "---:|---|---:|");
    }
    let _ = writeln!(out, "---:|");

    for row in rows {
        let _ = write!(out, "| {} | {} |", row.title, row.ideal);
        for outcome in &row.outcomes {
            match outcome {
                Outcome::Done { sample, peak_bytes } => {
                    let _ = write!(
                        out,
                        " {} | {} | {} |",
                        time_cell(row.unit, sample),
                        fetched_cell(sample.fetched),
                        bytes(*peak_bytes)
                    );
                }
                Outcome::NotApplicable(reason) => {
                    let reason = reason.strip_prefix("n/a: ").unwrap_or(reason);
                    let _ = write!(out, " n/a: {} | – | – |", reason.replace('|', "/"));
                }
            }
        }
        let _ = writeln!(out, " {} |", ratio(row));
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Time: the median run's; ns per load/key/value, or µs for the whole run, or p50 / p99 \
         per load. Keys in batches: what the backend was asked for in that run. Peak: the most \
         heap in use at once above the workload's start, over all its runs (a counting global \
         allocator). Ratio < 1: anybatch is faster (latency: p50)."
    );
    let _ = writeln!(
        out,
        "\nSettings (batching workloads / latency workload): anybatch default `max_delay` 1 ms / \
         `Duration::ZERO` with `gather_yields(0)`; ultra-batch `eager_batch_size(Some(100))`, `delay_duration` 1 ms / \
         zero; dataloader `with_yield_count(10)` (default) / 0; async-graphql `HashMapCache`, \
         `delay` 1 ms (default) / zero. Row 5b: the latency settings with batch size 1 \
         (ultra-batch `eager_batch_size(Some(1))`). See `src/subjects.rs` for why."
    );
    out
}

fn time_cell(unit: Unit, sample: &Sample) -> String {
    match (unit, sample.latency) {
        (Unit::Latency, Some(latency)) => {
            format!("{:.1} / {:.1} µs", micros(latency.p50), micros(latency.p99))
        }
        (Unit::NsPer(label, count), _) => {
            format!(
                "{:.0} {label}",
                sample.elapsed.as_nanos() as f64 / count as f64
            )
        }
        _ => format!("{:.0} µs", micros(sample.elapsed)),
    }
}

/// The figure compared across libraries.
fn figure(unit: Unit, outcome: &Outcome) -> Option<f64> {
    match outcome {
        Outcome::Done { sample, .. } => Some(match (unit, sample.latency) {
            (Unit::Latency, Some(latency)) => micros(latency.p50),
            _ => micros(sample.elapsed),
        }),
        Outcome::NotApplicable(_) => None,
    }
}

fn ratio(row: &Row) -> String {
    let ours = figure(row.unit, &row.outcomes[0]);
    let best_peer = row.outcomes[1..]
        .iter()
        .filter_map(|outcome| figure(row.unit, outcome))
        .min_by(f64::total_cmp);
    match (ours, best_peer) {
        (Some(ours), Some(peer)) if peer > 0.0 => format!("{:.2}", ours / peer),
        _ => "n/a".into(),
    }
}

fn fetched_cell(fetched: Fetched) -> String {
    if fetched.batches == 0 {
        return format!("{} in 0", fetched.keys);
    }
    format!(
        "{} in {} ({:.1}, {})",
        fetched.keys,
        fetched.batches,
        fetched.keys as f64 / fetched.batches as f64,
        fetched.largest
    )
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn bytes(count: usize) -> String {
    const KIB: f64 = 1024.0;
    let count = count as f64;
    if count >= KIB * KIB {
        format!("{:.1} MiB", count / (KIB * KIB))
    } else if count >= KIB {
        format!("{:.0} KiB", count / KIB)
    } else {
        format!("{count:.0} B")
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews
/// every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The current UTC date and time, without a date library.
fn utc_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs()) as i64;
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        of_day / 3_600,
        of_day % 3_600 / 60
    )
}
