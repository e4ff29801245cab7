//! Fork-join over a few tasks (one a thread, as the kernels split their layers), whose waiting
//! side spins rather than sleeps.
//!
//! A layer split in two runs one half on the calling worker and leaves the other for a second
//! worker to steal. When the calling worker finishes first, rayon's join waits a few dozen
//! yields and then puts it to sleep, and the second worker wakes it through the kernel when
//! its half is done. On a virtual machine that wake-up took 20-40 us (V2 on two threads: 4% of
//! its 1x1 layers ended so, 21-40 us of each forward). Here the calling worker spins until the
//! other half is done, running any job it finds meanwhile (its own other half, if nobody stole
//! it), and only after [`SPIN_LIMIT`] falls back to rayon's wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the calling worker spins for the other half before it lets rayon's join wait.
const SPIN_LIMIT: Duration = Duration::from_micros(300);

/// `run(task)` for every task in `0..tasks` on rayon's current pool, as
/// `(0..tasks).into_par_iter().for_each(run)`, halving the range at each fork.
pub(crate) fn for_each_task(tasks: usize, run: impl Fn(usize) + Sync) {
    split(0..tasks, &run);
}

fn split(tasks: std::ops::Range<usize>, run: &(impl Fn(usize) + Sync)) {
    if tasks.len() <= 1 {
        tasks.for_each(run);
        return;
    }
    let middle = tasks.start + tasks.len() / 2;
    let right_done = AtomicBool::new(false);
    rayon::join(
        || {
            split(tasks.start..middle, run);
            spin_until(&right_done);
        },
        || {
            split(middle..tasks.end, run);
            right_done.store(true, Ordering::Release);
        },
    );
}

/// Spins until `flag`, running pending jobs of the pool meanwhile (the other half itself when
/// nobody stole it, so that this never waits on work below it), for at most [`SPIN_LIMIT`]
/// without a job.
fn spin_until(flag: &AtomicBool) {
    let mut idle_since: Option<Instant> = None;
    let mut rounds = 0u32;
    while !flag.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            (idle_since, rounds) = (None, 0);
            continue;
        }
        std::hint::spin_loop();
        rounds += 1;
        // The clock only every 64 rounds, as `native::keep_busy`.
        if rounds.is_multiple_of(64)
            && idle_since.get_or_insert_with(Instant::now).elapsed() > SPIN_LIMIT
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_task_runs_once_on_any_pool() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            for tasks in [0, 1, 2, 3, 7] {
                let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                pool.install(|| {
                    for_each_task(tasks, |task| {
                        counts[task].fetch_add(1, Ordering::Relaxed);
                    })
                });
                assert!(
                    counts
                        .iter()
                        .all(|count| count.load(Ordering::Relaxed) == 1)
                );
            }
        }
        // Outside any pool (rayon's global one takes the work).
        let counts: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
        for_each_task(4, |task| {
            counts[task].fetch_add(1, Ordering::Relaxed);
        });
        assert!(
            counts
                .iter()
                .all(|count| count.load(Ordering::Relaxed) == 1)
        );
    }
}
