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

/// `run(a_part, b_part)` on `threads` tasks at most, for pairs of a `chunk_a`-long chunk of
/// `a` and a `chunk_b`-long chunk of `b`, in order: each task takes a contiguous range of
/// pairs, as even as they go, and calls `run` on each pair of its range. One task (on the
/// calling thread) where `threads` is 1 or there is one pair.
///
/// # Panics
/// If `a` and `b` hold different numbers of whole chunks.
pub(crate) fn zip_chunks<A: Sync, B: Send>(
    a: &[A],
    chunk_a: usize,
    b: &mut [B],
    chunk_b: usize,
    threads: usize,
    run: impl Fn((&[A], &mut [B])) + Sync,
) {
    assert!(chunk_a > 0 && chunk_b > 0 && a.len().is_multiple_of(chunk_a));
    let pairs = a.len() / chunk_a;
    assert!(b.len() == pairs * chunk_b, "chunks of other counts");
    let tasks = threads.clamp(1, pairs.max(1));
    if tasks == 1 {
        a.chunks_exact(chunk_a)
            .zip(b.chunks_exact_mut(chunk_b))
            .for_each(run);
        return;
    }
    let at = |task: usize| pairs * task / tasks;
    // Each task's part of `b`, taken by that task alone (the lock is never contended).
    let mut parts = Vec::with_capacity(tasks);
    let mut rest = b;
    for task in 0..tasks {
        let (part, tail) = rest.split_at_mut((at(task + 1) - at(task)) * chunk_b);
        parts.push(std::sync::Mutex::new(part));
        rest = tail;
    }
    for_each_task(tasks, |task| {
        let mut part = parts[task]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let a = &a[at(task) * chunk_a..at(task + 1) * chunk_a];
        a.chunks_exact(chunk_a)
            .zip(part.chunks_exact_mut(chunk_b))
            .for_each(&run);
    });
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
            spin_until(&right_done, SPIN_LIMIT);
        },
        || {
            split(middle..tasks.end, run);
            right_done.store(true, Ordering::Release);
        },
    );
}

/// Spins until `flag`, running pending jobs of the pool meanwhile (the other half itself when
/// nobody stole it, so that this never waits on work below it), and gives up after `limit`
/// without a job. Also `native`'s helper worker that stays awake for a forward's length.
pub(crate) fn spin_until(flag: &AtomicBool, limit: Duration) {
    let mut idle_since: Option<Instant> = None;
    let mut rounds = 0u32;
    while !flag.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            (idle_since, rounds) = (None, 0);
            continue;
        }
        std::hint::spin_loop();
        rounds += 1;
        // The clock only every 64 rounds: reading it each round was ~2% of a forward.
        if rounds.is_multiple_of(64)
            && idle_since.get_or_insert_with(Instant::now).elapsed() > limit
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

    #[test]
    fn zip_chunks_pairs_every_chunk_in_order() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("thread pool");
        for (pairs, threads) in [(0, 2), (1, 3), (5, 1), (5, 2), (7, 3), (2, 8)] {
            let a: Vec<usize> = (0..pairs * 2).collect();
            let mut b = vec![0usize; pairs * 3];
            pool.install(|| {
                zip_chunks(&a, 2, &mut b, 3, threads, |(a, b)| {
                    b.iter_mut().for_each(|value| *value = a[0] / 2 + 1);
                })
            });
            let expected: Vec<usize> = (0..pairs * 3).map(|i| i / 3 + 1).collect();
            assert_eq!(b, expected, "{pairs} pairs on {threads} threads");
        }
    }
}
