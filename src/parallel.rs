//! Spreading answer-table rebuilds over the machine's cores. Rebuilds run off the query
//! path; their work is split into parts that run side by side, each on its own thread.
//! Background work (rankings, ranking ahead) runs at a lower priority and pauses while an
//! answer build runs.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How many parts to split a rebuild's work into: one per core, at most 8. Asked of the
/// system once (it reads cgroup files each time), then kept.
pub fn workers() -> usize {
    static WORKERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *WORKERS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
    })
}

/// Runs `work` on every part, each on its own thread (a single part on the caller's), and
/// returns the results in the parts' order. A panic in a part is resumed on the caller.
pub fn each<T: Send, R: Send>(
    parts: impl IntoIterator<Item = T>,
    work: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let mut parts: Vec<T> = parts.into_iter().collect();
    if parts.len() == 1 {
        // One part: no thread to start.
        return parts.drain(..).map(work).collect();
    }
    let work = &work;
    let background = BACKGROUND.get();
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    BACKGROUND.set(background);
                    work(part)
                })
            })
            .collect();
        handles.into_iter().map(joined).collect()
    })
}

/// Runs `work` on every item, on one thread per core, each thread taking the next item
/// not yet taken: items of uneven cost keep every core busy to the end, where parts fixed
/// in advance would leave one waiting for another. The results are in the items' order.
pub fn each_taken<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = workers().min(items.len());
    if threads <= 1 {
        return items.into_iter().map(work).collect();
    }
    let count = items.len();
    // Off the query path: a lock per item taken costs nothing next to the item's work.
    let queue = std::sync::Mutex::new(items.into_iter().enumerate());
    let take = || {
        let mut done = Vec::new();
        loop {
            yield_to_builds();
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((at, item)) = next else {
                return done;
            };
            done.push((at, work(item)));
        }
    };
    let mut results: Vec<(usize, R)> = each(0..threads, |_| take()).into_iter().flatten().collect();
    results.sort_unstable_by_key(|(at, _)| *at);
    debug_assert_eq!(results.len(), count);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Runs `a` on a thread of its own and `b` on this one, side by side.
pub fn both<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    let background = BACKGROUND.get();
    std::thread::scope(|scope| {
        let a = scope.spawn(move || {
            BACKGROUND.set(background);
            a()
        });
        let b = b();
        (joined(a), b)
    })
}

/// A part's result; its panic, resumed here.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Answer builds running now: background work pauses at its next [`yield_to_builds`].
static BUILDS: AtomicUsize = AtomicUsize::new(0);
/// Where background work waits for the builds to end.
static BUILDS_ENDED: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
/// The longest one wait at [`yield_to_builds`] lasts before looking again.
const LONGEST_YIELD: Duration = Duration::from_millis(50);

thread_local! {
    /// Whether this thread does background work (set by [`lower_this_threads_priority`],
    /// passed on to the threads [`each`] starts).
    static BACKGROUND: Cell<bool> = const { Cell::new(false) };
}

/// An answer build under way: background work yields the cores until it is dropped.
/// A lower CPU priority alone is not enough: on this kind of machine a build beside a
/// nice-10 thread on each core took twice as long as alone (measured in process).
#[must_use = "the build counts as running while this lives"]
pub struct Building(());

/// Marks an answer build as running until the result is dropped.
pub fn building() -> Building {
    BUILDS.fetch_add(1, Ordering::SeqCst);
    Building(())
}

impl Drop for Building {
    fn drop(&mut self) {
        if BUILDS.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Taken so that a thread between its look and its wait cannot miss this; but
            // never waited for: a background thread holding it may get no CPU time for a
            // while, and one that misses this looks again after `LONGEST_YIELD`.
            let _held = BUILDS_ENDED.0.try_lock();
            BUILDS_ENDED.1.notify_all();
        }
    }
}

/// On a background thread, waits while an answer build runs (each wait at most
/// [`LONGEST_YIELD`]); elsewhere returns at once. Called between small steps of
/// background work, never with a lock held.
pub fn yield_to_builds() {
    if !BACKGROUND.get() || BUILDS.load(Ordering::Relaxed) == 0 {
        return;
    }
    let (gate, ended) = &BUILDS_ENDED;
    let held = gate.lock().unwrap_or_else(|e| e.into_inner());
    if BUILDS.load(Ordering::SeqCst) > 0 {
        drop(ended.wait_timeout(held, LONGEST_YIELD));
    }
}

/// How far a background thread steps back for other work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// Nice 10: for work something waits for (a reload's ranking, freeing memory), which
    /// must go on, slowly, when the cores are busy.
    Lower,
    /// Only CPU time no other thread wants (`SCHED_IDLE`): for work nothing waits for
    /// (latency feeds' rankings, ranking ahead). A thread of normal priority woken on its
    /// core takes it at once; at nice 10 it waited for the background thread's time
    /// slice to end (measured: tokio workers woken up to 8 ms late under feed rankings,
    /// most of a change's time beyond its build).
    Idle,
}

/// Lowers the calling thread's CPU priority (and so that of every thread it starts
/// afterwards) as `how` says, and makes it yield to answer builds ([`yield_to_builds`]):
/// for work that may take a while and must not delay answer builds or the threads that
/// serve queries when the cores are busy. The priority is left alone where unsupported.
pub fn lower_this_threads_priority(how: Background) {
    BACKGROUND.set(true);
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: gettid, setpriority and sched_setscheduler take plain integers and a pointer
    // to a parameter that lives across the call; on Linux the nice value and the policy
    // are per thread, and a thread may always lower its own.
    unsafe {
        let thread = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, 10);
        if how == Background::Idle {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_in_order() {
        assert_eq!(super::each(0..5, |i| i * 10), vec![0, 10, 20, 30, 40]);
        assert!(super::each(Vec::<u8>::new(), |i| i).is_empty());
        assert_eq!(super::both(|| 1u8, || "b"), (1, "b"));
        // Items of uneven cost, taken one at a time: every one once, results in order.
        let items: Vec<u64> = (0..40).collect();
        let spin = |i: u64| (0..(i % 7) * 10_000).fold(i, |a, x| a ^ x) ^ i;
        let expected: Vec<u64> = items.iter().map(|&i| spin(i)).collect();
        assert_eq!(super::each_taken(items, spin), expected);
        assert!(super::each_taken(Vec::<u8>::new(), |i| i).is_empty());
    }
}
