//! Publication frames, encoded once whatever the number of connections they
//! are queued to.

use bytes::Bytes;
use microsocket_core::{encode_publication, EncodeError};

/// The `!` frame of one publication, ready to queue to every subscriber.
///
/// # Errors
/// [`EncodeError`] if the frame cannot be encoded (more than 254 values, or
/// one over 4 GiB).
///
/// ```
/// let frame = microsocket_host::publication_frame(b"news", ["hi"]).unwrap();
/// assert_eq!(&frame[..], b"!\x02\x00\x00\x00\x04news\x00\x00\x00\x02hi");
/// ```
pub fn publication_frame<I>(topic: &[u8], values: I) -> Result<Bytes, EncodeError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
    I::IntoIter: Clone,
{
    let values = values.into_iter();
    // The frame's size: its values' frame, plus the topic and its length.
    let len = microsocket_core::frame::encoded_len(values.clone())? + 4 + topic.len();
    let mut frame = Vec::with_capacity(len);
    encode_publication(topic, values, &mut frame)?;
    Ok(Bytes::from(frame))
}

/// The frames of a batch of `(topic, values)` publications, with their
/// topics, in order: what `Hub::publish_batch` takes (zip them).
///
/// # Errors
/// The first [`EncodeError`]; then nothing is returned.
pub fn publication_frames<T, I>(
    publications: impl IntoIterator<Item = (T, I)>,
) -> Result<(Vec<T>, Vec<Bytes>), EncodeError>
where
    T: AsRef<[u8]>,
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
    I::IntoIter: Clone,
{
    let (mut topics, mut frames) = (Vec::new(), Vec::new());
    for (topic, values) in publications {
        frames.push(publication_frame(topic.as_ref(), values)?);
        topics.push(topic);
    }
    Ok((topics, frames))
}
