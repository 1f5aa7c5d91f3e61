//! Serial lines (a UART, a USB CDC device, a pseudo-terminal) as byte streams
//! for microsocket: opened in raw mode, so every byte passes as it is, at a
//! chosen baud rate for real UARTs.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustix::termios::{tcgetattr, tcsetattr, ControlModes, InputModes, OptionalActions, SpecialCodeIndex};

/// A serial line to open: its device and, for a real UART, its baud rate.
///
/// Written `DEVICE` or `DEVICE@BAUD` (`/dev/ttyACM0@115200`), as after the
/// `serial:` of a client address.
///
/// ```
/// use microsocket_socket::SerialLine;
/// let line: SerialLine = "/dev/ttyUSB0@115200".parse().unwrap();
/// assert_eq!((line.device.to_str(), line.baud), (Some("/dev/ttyUSB0"), Some(115_200)));
/// let pty: SerialLine = "/dev/pts/3".parse().unwrap();
/// assert_eq!(pty.baud, None);
/// assert!("/dev/ttyS0@fast".parse::<SerialLine>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialLine {
    /// The character device or pseudo-terminal.
    pub device: PathBuf,
    /// The baud rate to set; `None` leaves the line's own (a pseudo-terminal
    /// has none that matters).
    pub baud: Option<u32>,
}

/// Why a string is not a [`SerialLine`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SerialLineError {
    /// No device.
    #[error("no serial device given")]
    Empty,
    /// What follows `@` is not a baud rate.
    #[error("{0:?} is not a baud rate")]
    BadBaud(String),
}

impl FromStr for SerialLine {
    type Err = SerialLineError;

    fn from_str(s: &str) -> Result<Self, SerialLineError> {
        let (device, baud) = match s.rsplit_once('@') {
            Some((device, baud)) => {
                let baud = baud.parse().map_err(|_| SerialLineError::BadBaud(baud.to_owned()))?;
                (device, Some(baud))
            }
            None => (s, None),
        };
        if device.is_empty() {
            return Err(SerialLineError::Empty);
        }
        Ok(Self {
            device: device.into(),
            baud,
        })
    }
}

impl SerialLine {
    /// Opens the line for reading and writing, in raw mode (no echo, no line
    /// editing, no translation of bytes, no signals from special characters),
    /// ignoring modem control lines, at the baud rate if one is set, and
    /// without making it this process's controlling terminal. `nonblocking`
    /// opens it with `O_NONBLOCK`, for an event loop.
    ///
    /// # Errors
    /// From opening the device; or if it is not a terminal
    /// (`ENOTTY`), or the baud rate is not one the line supports.
    pub fn open(&self, nonblocking: bool) -> io::Result<File> {
        open_raw(&self.device, self.baud, nonblocking)
    }
}

fn open_raw(device: &Path, baud: Option<u32>, nonblocking: bool) -> io::Result<File> {
    // Opened without waiting, whatever is asked: a UART that waits for its
    // carrier (`CLOCAL` off) would block the open itself.
    let flags = rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags.bits() as i32)
        .open(device)?;
    let mut termios = tcgetattr(&file)?;
    termios.make_raw();
    termios.control_modes |= ControlModes::CLOCAL | ControlModes::CREAD;
    // Neither software nor hardware flow control: XON/XOFF bytes would be
    // taken out of (or put into) binary frames, and RTS/CTS can stall writes
    // on a line without the wires.
    termios.input_modes -= InputModes::IXON | InputModes::IXOFF | InputModes::IXANY;
    termios.control_modes -= ControlModes::CRTSCTS;
    // A read returns as soon as one byte is there.
    termios.special_codes[SpecialCodeIndex::VMIN] = 1;
    termios.special_codes[SpecialCodeIndex::VTIME] = 0;
    if let Some(baud) = baud {
        termios.set_speed(baud)?;
    }
    tcsetattr(&file, OptionalActions::Now, &termios)?;
    if !nonblocking {
        let flags = rustix::fs::fcntl_getfl(&file)?;
        rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A pseudo-terminal pair: the controlling side, and the device path of the
    /// other.
    fn pty() -> (File, PathBuf) {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        (File::from(master), PathBuf::from(name.to_str().unwrap()))
    }

    #[test]
    fn a_pseudo_terminal_passes_every_byte_as_it_is() {
        let (mut master, device) = pty();
        let line = SerialLine { device, baud: None };
        let mut port = line.open(false).unwrap();
        // Bytes a terminal would otherwise turn into signals, line ends and echo.
        let all: Vec<u8> = (0..=255).collect();
        master.write_all(&all).unwrap();
        let mut got = vec![0; all.len()];
        port.read_exact(&mut got).unwrap();
        assert_eq!(got, all);
        port.write_all(b"\r\n\x03").unwrap();
        let mut back = [0; 3];
        master.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"\r\n\x03");
    }

    #[test]
    fn what_is_not_a_terminal_is_refused() {
        let line = SerialLine {
            device: "/dev/null".into(),
            baud: None,
        };
        assert!(line.open(false).is_err());
        assert!(SerialLine {
            device: "/nonexistent/tty".into(),
            baud: Some(9600)
        }
        .open(false)
        .is_err());
    }
}
