//! UART0 of the LM3S6965, polled: the only hardware the firmware touches.
//! Its registers are memory-mapped; each access is one volatile read or write.

/// UART0's registers (Stellaris LM3S6965 data sheet, section 12).
const UART0: usize = 0x4000_C000;
const DR: usize = 0x000;
const FR: usize = 0x018;
const LCRH: usize = 0x02C;
const CTL: usize = 0x030;
/// Flag register: receive FIFO empty, transmit FIFO full.
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
/// Run-mode clock gating of UART0 (system control).
const RCGC1: usize = 0x400F_E104;

fn read(register: usize) -> u32 {
    // SAFETY: `register` is one of UART0's (or system control's) registers,
    // always mapped on this chip; a volatile read has no other effect.
    unsafe { core::ptr::read_volatile(register as *const u32) }
}

fn write(register: usize, value: u32) {
    // SAFETY: as in `read`; the firmware is the only user of UART0.
    unsafe { core::ptr::write_volatile(register as *mut u32, value) }
}

/// The board's UART0, 8 data bits, FIFOs on.
pub struct Uart0(());

impl Uart0 {
    /// Clocks and enables UART0. Call once.
    pub fn new() -> Self {
        write(RCGC1, read(RCGC1) | 1);
        // 8 data bits, FIFOs enabled.
        write(UART0 + LCRH, (0b11 << 5) | (1 << 4));
        // UART, transmitter and receiver enabled.
        write(UART0 + CTL, (1 << 9) | (1 << 8) | 1);
        Self(())
    }

    /// Moves the bytes waiting in the receive FIFO into `buf`; returns how many.
    pub fn read_available(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() && read(UART0 + FR) & FR_RXFE == 0 {
            buf[n] = read(UART0 + DR) as u8;
            n += 1;
        }
        n
    }

    /// Puts as much of `bytes` as the transmit FIFO takes; returns how many.
    pub fn write_available(&mut self, bytes: &[u8]) -> usize {
        let mut n = 0;
        while n < bytes.len() && read(UART0 + FR) & FR_TXFF == 0 {
            write(UART0 + DR, u32::from(bytes[n]));
            n += 1;
        }
        n
    }
}
