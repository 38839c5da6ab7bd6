//! A heap of this copy's own for what building the AWS clients leaves behind in statics, given
//! back when the copy is unloaded.
//!
//! The SDK crates keep state in `static` lazies that are never dropped: the platform's root
//! certificates (~170 KiB, aws-smithy-http-client), one parsed partition table per service
//! crate (~26 KiB each: bedrock-runtime, bedrock, sts), and a few small ones. A static's storage
//! goes with the image at `dlclose`, but what it points to was `malloc`ed and stayed: ~260 KiB
//! per swap, the whole of a gateway's growth over thousands of swaps. Those lazies are forced
//! while the clients are built (`Clients::new`, on the control thread), so the allocations made
//! on that thread in that window go to a region mapped for this copy; everything else goes to
//! the system allocator untouched (one relaxed load on the hot path). At unload the region is
//! unmapped whole — only when no provider of this copy is alive and the image was never pinned,
//! so nothing that can still run refers to it.
//!
//! Blocks are power-of-two classes with one free list each (allocations in the window are few and
//! mostly short-lived: parsing config files, the CA bundle); a block freed or grown later, from
//! any thread, returns to its list.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Address space reserved (not committed: pages are touched only as used). Building the clients
/// peaks well under this; past it, allocations fall back to the system allocator.
const RESERVE: usize = 64 << 20;
const MIN_SHIFT: u32 = 4;
const CLASSES: usize = 27;

/// The region's bounds; `END` 0 while there is none.
static BASE: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);
/// Threads with a window open: the hot path's only check.
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// Providers of this copy alive (their clients may point into the region).
static HOLDERS: AtomicUsize = AtomicUsize::new(0);
/// Set when the image pins itself: its threads may outlive every provider, so the region stays.
static KEEP: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Const-initialised and without `Drop`: no thread-exit destructor is registered, so reading
    // it on any thread cannot pin the image (see PLUGIN-NOTES).
    static IN_WINDOW: Cell<bool> = const { Cell::new(false) };
}

struct Region {
    lock: AtomicBool,
    state: UnsafeCell<State>,
}

struct State {
    /// Next unused address.
    bump: usize,
    /// Heads of the free lists (0: empty); a free block's first word links to the next.
    free: [usize; CLASSES],
    live: usize,
    high_water: usize,
}

// SAFETY: `state` is only touched under `lock`.
unsafe impl Sync for Region {}

static REGION: Region = Region { lock: AtomicBool::new(false), state: UnsafeCell::new(State { bump: 0, free: [0; CLASSES], live: 0, high_water: 0 }) };

impl Region {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut spins = 0u32;
        while self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // SAFETY: plain syscall.
                unsafe { libc::sched_yield() };
            }
        }
        // SAFETY: the lock is held, so this is the only reference.
        let r = f(unsafe { &mut *self.state.get() });
        self.lock.store(false, Ordering::Release);
        r
    }
}

fn class(size: usize) -> usize {
    (size.max(1 << MIN_SHIFT).next_power_of_two().trailing_zeros() - MIN_SHIFT) as usize
}

fn contains(addr: usize) -> bool {
    addr < END.load(Ordering::Relaxed) && addr >= BASE.load(Ordering::Relaxed)
}

fn region_alloc(layout: Layout) -> *mut u8 {
    let c = class(layout.size());
    if c >= CLASSES {
        return std::ptr::null_mut();
    }
    let size = 1usize << (c as u32 + MIN_SHIFT);
    let align = layout.align().max(1 << MIN_SHIFT);
    let end = END.load(Ordering::Relaxed);
    REGION.with(|s| {
        let head = s.free[c];
        let addr = if head != 0 && head % align == 0 {
            // SAFETY: `head` is a free block of this region; its first word is the link.
            s.free[c] = unsafe { *(head as *const usize) };
            head
        } else {
            let start = (s.bump + align - 1) & !(align - 1);
            if start == 0 || start.checked_add(size).is_none_or(|e| e > end) {
                return std::ptr::null_mut();
            }
            s.bump = start + size;
            start
        };
        s.live += size;
        s.high_water = s.high_water.max(s.live);
        addr as *mut u8
    })
}

fn region_free(ptr: *mut u8, layout: Layout) {
    let c = class(layout.size());
    REGION.with(|s| {
        // SAFETY: `ptr` is a block of this region, of class `c`, no longer used by its owner.
        unsafe { *(ptr as *mut usize) = s.free[c] };
        s.free[c] = ptr as usize;
        s.live -= 1usize << (c as u32 + MIN_SHIFT);
    })
}

/// The global allocator of this image.
pub struct CopyHeap;

fn in_window() -> bool {
    OPEN.load(Ordering::Relaxed) != 0 && IN_WINDOW.with(Cell::get)
}

unsafe impl GlobalAlloc for CopyHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if in_window() {
            let p = region_alloc(layout);
            if !p.is_null() {
                return p;
            }
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if in_window() {
            let p = region_alloc(layout);
            if !p.is_null() {
                // A reused block holds old bytes.
                std::ptr::write_bytes(p, 0, layout.size());
                return p;
            }
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if contains(ptr as usize) {
            region_free(ptr, layout)
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !contains(ptr as usize) {
            return System.realloc(ptr, layout, new_size);
        }
        if class(new_size) == class(layout.size()) {
            return ptr;
        }
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            region_free(ptr, layout);
        }
        new
    }
}

/// Runs `f` with this thread's allocations going to the region (when it can be had).
pub fn in_region<R>(f: impl FnOnce() -> R) -> R {
    if !ensure_region() {
        return f();
    }
    struct Close;
    impl Drop for Close {
        fn drop(&mut self) {
            IN_WINDOW.with(|w| w.set(false));
            OPEN.fetch_sub(1, Ordering::AcqRel);
        }
    }
    OPEN.fetch_add(1, Ordering::AcqRel);
    IN_WINDOW.with(|w| w.set(true));
    let _close = Close;
    f()
}

fn ensure_region() -> bool {
    if END.load(Ordering::Acquire) != 0 {
        return true;
    }
    REGION.with(|s| {
        if END.load(Ordering::Acquire) != 0 {
            return true;
        }
        // SAFETY: a fresh private anonymous mapping; MAP_NORESERVE: address space, not memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                RESERVE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return false;
        }
        s.bump = p as usize;
        BASE.store(p as usize, Ordering::Release);
        END.store(p as usize + RESERVE, Ordering::Release);
        true
    })
}

/// A provider's claim on the region: held from before its control thread starts until the
/// provider is dropped.
pub struct Hold(());

impl Hold {
    pub fn new() -> Hold {
        HOLDERS.fetch_add(1, Ordering::AcqRel);
        Hold(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        HOLDERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The image pinned itself: a thread of it may run on after every provider is gone.
pub fn keep_forever() {
    KEEP.store(true, Ordering::Release);
}

/// Bytes of the region in use now and at most (for the log and tests).
pub fn usage() -> (usize, usize) {
    if END.load(Ordering::Acquire) == 0 {
        return (0, 0);
    }
    REGION.with(|s| (s.live, s.high_water))
}

/// Runs when the image is unloaded (`dlclose`) or at process exit.
extern "C" fn release_at_unload() {
    let (base, end) = (BASE.load(Ordering::Acquire), END.load(Ordering::Acquire));
    if end == 0 || KEEP.load(Ordering::Acquire) || HOLDERS.load(Ordering::Acquire) > 0 || OPEN.load(Ordering::Acquire) > 0 {
        return;
    }
    END.store(0, Ordering::Release);
    // SAFETY: the mapping made by `ensure_region`; no provider of this copy is alive and the image
    // never pinned itself, so only this image's statics (about to go) still point into it.
    unsafe { libc::munmap(base as *mut libc::c_void, end - base) };
}

#[used]
#[link_section = ".fini_array"]
static RELEASE_AT_UNLOAD: extern "C" fn() = release_at_unload;

#[cfg(test)]
mod tests {
    use super::*;

    /// The region is one per process: these tests take turns with it.
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn turn() -> std::sync::MutexGuard<'static, ()> {
        TURN.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn in_region_now(p: *const u8) -> bool {
        contains(p as usize)
    }

    #[test]
    fn allocations_in_the_window_land_in_the_region_and_others_do_not() {
        let _turn = turn();
        let (inside, aligned, outside) = in_region(|| {
            let inside: Vec<u8> = vec![7; 1000];
            let aligned = Box::new(Aligned([3; 32]));
            (inside, aligned, vec![1u8; 1000])
        });
        // `outside` was made in the window too; one made after it is not.
        let after = vec![2u8; 1000];
        assert!(in_region_now(inside.as_ptr()) && in_region_now(outside.as_ptr()));
        assert!(!in_region_now(after.as_ptr()));
        assert_eq!(&*aligned as *const Aligned as usize % 256, 0, "alignment kept");
        assert!(in_region_now(&*aligned as *const Aligned as *const u8));
        assert!(inside.iter().all(|b| *b == 7) && aligned.0.iter().all(|b| *b == 3));
    }

    #[repr(align(256))]
    struct Aligned([u8; 32]);

    #[test]
    fn a_region_block_grown_or_freed_on_another_thread_goes_back_to_its_list() {
        let _turn = turn();
        let mut v: Vec<u64> = in_region(|| (0..100).collect());
        assert!(in_region_now(v.as_ptr() as *const u8));
        let (live_before, _) = usage();
        // Grown outside the window: moves to the system allocator, contents kept.
        std::thread::spawn(move || {
            v.extend(100..10_000);
            assert!(!in_region_now(v.as_ptr() as *const u8));
            assert!(v.iter().copied().eq(0..10_000));
        })
        .join()
        .unwrap();
        assert!(usage().0 < live_before, "the old block was given back to the region");
        // A freed block of the same class is handed out again.
        let first = in_region(|| vec![0u8; 3000]);
        let addr = first.as_ptr() as usize;
        drop(first);
        let again = in_region(|| vec![9u8; 3500]);
        assert_eq!(again.as_ptr() as usize, addr, "same class (4 KiB), same block");
        assert!(again.iter().all(|b| *b == 9), "a reused block holds what was written");
        let zeroed = in_region(|| vec![0u64; 2000]);
        assert!(zeroed.iter().all(|w| *w == 0));
    }

    #[test]
    fn many_threads_allocating_and_freeing_region_blocks_keep_the_books_straight() {
        let _turn = turn();
        let blocks: Vec<Vec<u8>> = in_region(|| (0..400).map(|i| vec![i as u8; 16 + i * 7]).collect());
        let chunks: Vec<Vec<Vec<u8>>> = blocks.into_iter().fold(vec![Vec::new(); 4], |mut acc, b| {
            let n = b.len() % 4;
            acc[n].push(b);
            acc
        });
        let threads: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                std::thread::spawn(move || {
                    for b in chunk {
                        let i = (b.len() - 16) / 7;
                        assert!(b.iter().all(|x| *x == i as u8), "a block's bytes were overwritten");
                        let again = in_region(|| vec![i as u8; b.len()]);
                        drop(b);
                        assert!(again.iter().all(|x| *x == i as u8));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
