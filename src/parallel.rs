//! Spreading answer-table rebuilds over the machine's cores. Rebuilds run off the query
//! path; their work is split into parts that run side by side, each on its own thread.

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
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || work(part)))
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
    std::thread::scope(|scope| {
        let a = scope.spawn(a);
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

/// Lowers the calling thread's CPU priority (nice 10), and so that of every thread it starts
/// afterwards: for work that may take a while and must not delay answer builds or the
/// threads that serve queries when the cores are busy. A no-op where unsupported.
pub fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours; on
    // Linux the nice value is per thread, and a thread may always raise its own.
    unsafe {
        let thread = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, 10);
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
