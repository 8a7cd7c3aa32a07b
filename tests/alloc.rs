//! Integration check that the counting allocator is the global allocator of any binary that
//! merely links `cairn`, seen only through the public `cairn::alloc` API. It runs as its
//! own process, so nothing another test binary sets up can make it pass.

use std::hint::black_box;

use cairn::alloc;

#[test]
fn linking_cairn_installs_the_counting_allocator() {
    assert!(alloc::installed());
    let scope = alloc::Scope::start();
    let buffer: Vec<u8> = black_box(Vec::with_capacity(1000));
    let allocated = scope.counters();
    assert_eq!(allocated.allocations, 1);
    assert!(allocated.bytes_allocated >= 1000);
    assert_eq!(scope.allocations(), 1);
    drop(buffer);
    let freed = scope.counters();
    assert_eq!(freed.deallocations, 1);
    assert_eq!(freed.bytes_freed, allocated.bytes_allocated);
    assert_eq!(freed.bytes_live, 0);
}

#[test]
fn process_sees_this_thread_and_a_scope_without_allocation_reads_zero() {
    let process_before = alloc::process();
    let thread_before = alloc::thread();
    let buffer: Vec<u8> = black_box(vec![1; 4096]);
    let thread_grown = alloc::thread().since(&thread_before);
    let process_grown = alloc::process().since(&process_before);
    assert_eq!(thread_grown.bytes_allocated, 4096);
    assert!(process_grown.bytes_allocated >= 4096);

    let scope = alloc::Scope::start();
    let sum: u64 = black_box(&buffer).iter().map(|&byte| u64::from(byte)).sum();
    assert_eq!(scope.allocations(), 0);
    assert_eq!(scope.counters(), alloc::Counters::default());
    assert_eq!(sum, 4096);
}
