//! Helper threads that start at once, beside their creator.
//!
//! Linux may place a new thread on its creator's CPU. When the creator
//! keeps running, the new thread then waits for the load balancer to move
//! it, up to a scheduler tick: 3-4 ms measured on a 2-vCPU KVM guest
//! (kernel 6.18), which is most of a hook's time, while the other CPU sits
//! idle. A thread meant to run alongside its creator is therefore allowed
//! only on the other CPUs the process may use (when there are any), so the
//! kernel starts it on one of them straight away.

use std::thread::JoinHandle;

/// Spawns `f` on a new thread that starts on another CPU than the
/// caller's, when the process may run on more than one. Meant for short
/// helpers that run alongside the caller: the thread keeps that CPU mask.
pub fn spawn_beside<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let handle = std::thread::spawn(f);
    #[cfg(target_os = "linux")]
    keep_off_this_cpu(&handle);
    handle
}

#[cfg(target_os = "linux")]
fn keep_off_this_cpu<T>(handle: &JoinHandle<T>) {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: cpu_set_t is plain data; the calls get valid pointers and
    // sizes, and the pthread_t is alive (we hold its JoinHandle).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let here = libc::sched_getcpu();
        if here < 0 || libc::sched_getaffinity(0, size, &mut set) != 0 {
            return;
        }
        libc::CPU_CLR(here as usize, &mut set);
        if libc::CPU_COUNT(&set) > 0 {
            // Best effort: on failure the thread runs where it was put.
            libc::pthread_setaffinity_np(handle.as_pthread_t(), size, &set);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_helper_runs_and_returns() {
        let h = super::spawn_beside(|| 6 * 7);
        assert_eq!(h.join().unwrap(), 42);
    }

    #[cfg(target_os = "linux")]
    fn cpus_allowed() -> i32 {
        // SAFETY: as in keep_off_this_cpu.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
            libc::CPU_COUNT(&set)
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_helper_may_use_every_cpu_but_its_creators() {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let h = super::spawn_beside(move || {
            // Read the mask once the creator has set it.
            let _ = wait.recv();
            cpus_allowed()
        });
        go.send(()).unwrap();
        let (mine, helpers) = (cpus_allowed(), h.join().unwrap());
        if mine > 1 {
            assert_eq!(helpers, mine - 1);
        } else {
            assert_eq!(helpers, mine, "with one CPU the mask is left alone");
        }
    }
}
