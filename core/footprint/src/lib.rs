//! What every footprint image shares: a byte source and sink the optimizer
//! cannot see through (a UART's data register, read and written volatile),
//! and a panic handler that adds nothing.

#![no_std]

use core::panic::PanicInfo;

/// A UART data register (the LM3S6965's UART0).
const DATA: usize = 0x4000_C000;

/// Reads up to `buf.len()` bytes; returns how many.
pub fn receive(buf: &mut [u8]) -> usize {
    let n = buf.len().min(64);
    for b in &mut buf[..n] {
        // SAFETY: a memory-mapped register, always present on the part.
        *b = unsafe { core::ptr::read_volatile(DATA as *const u32) } as u8;
    }
    n
}

/// Writes `bytes`; returns how many were taken.
pub fn send(bytes: &[u8]) -> usize {
    for &b in bytes {
        // SAFETY: as in `receive`.
        unsafe { core::ptr::write_volatile(DATA as *mut u32, u32::from(b)) };
    }
    bytes.len()
}

/// Keeps `value` alive for the optimizer.
pub fn keep<T>(value: T) {
    core::hint::black_box(value);
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    cortex_m::asm::udf()
}
