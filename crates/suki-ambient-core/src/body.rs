//! `BodyBuffer`: collects a request body in one buffer, refusing it once it passes the limit.

use bytes::{Bytes, BytesMut};

use crate::VerifyError;

/// Collects a streamed body up to a limit, for adapters: a body that arrives in one chunk is
/// kept as is (no copy); several chunks are gathered into one buffer sized from the declared
/// length. Pushing past the limit fails at once, so chunked bodies without a Content-Length are
/// cut as soon as they exceed it.
///
/// # Example
///
/// ```
/// use suki_ambient_core::adapter::BodyBuffer;
/// use suki_ambient_core::{Bytes, VerifyError};
///
/// let mut body = BodyBuffer::new(8, None);
/// body.push(Bytes::from_static(b"1234"))?;
/// body.push(Bytes::from_static(b"5678"))?;
/// assert_eq!(body.push(Bytes::from_static(b"9")), Err(VerifyError::BodyTooLarge { limit: 8 }));
/// # Ok::<(), VerifyError>(())
/// ```
#[derive(Debug)]
pub struct BodyBuffer {
    limit: usize,
    declared: usize,
    first: Option<Bytes>,
    rest: BytesMut,
}

impl BodyBuffer {
    /// A buffer for at most `limit` bytes; `declared` is the Content-Length, when sent.
    pub fn new(limit: usize, declared: Option<u64>) -> Self {
        let declared = declared.map_or(0, |d| usize::try_from(d).unwrap_or(usize::MAX).min(limit));
        Self {
            limit,
            declared,
            first: None,
            rest: BytesMut::new(),
        }
    }

    /// Bytes collected so far.
    pub fn len(&self) -> usize {
        self.first.as_ref().map_or(self.rest.len(), Bytes::len)
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a chunk.
    ///
    /// # Errors
    /// [`VerifyError::BodyTooLarge`] when the body would pass the limit.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), VerifyError> {
        if self.len() + chunk.len() > self.limit {
            return Err(VerifyError::BodyTooLarge { limit: self.limit });
        }
        if chunk.is_empty() {
            return Ok(());
        }
        match self.first.take() {
            None if self.rest.is_empty() => self.first = Some(chunk),
            None => self.rest.extend_from_slice(&chunk),
            Some(head) => {
                self.rest
                    .reserve(self.declared.max(head.len() + chunk.len()));
                self.rest.extend_from_slice(&head);
                self.rest.extend_from_slice(&chunk);
            }
        }
        Ok(())
    }

    /// The whole body.
    pub fn finish(self) -> Bytes {
        self.first.unwrap_or_else(|| self.rest.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_chunk_is_not_copied() {
        let chunk = Bytes::from(vec![7u8; 100]);
        let ptr = chunk.as_ptr();
        let mut body = BodyBuffer::new(100, Some(100));
        body.push(chunk).unwrap();
        assert_eq!(body.finish().as_ptr(), ptr);
    }

    #[test]
    fn chunks_are_joined_and_limited() {
        let mut body = BodyBuffer::new(10, None);
        for part in [&b"ab"[..], b"", b"cde", b"fghij"] {
            body.push(Bytes::copy_from_slice(part)).unwrap();
        }
        assert_eq!(body.len(), 10);
        assert_eq!(
            body.push(Bytes::from_static(b"k")),
            Err(VerifyError::BodyTooLarge { limit: 10 })
        );
        assert_eq!(body.finish(), Bytes::from_static(b"abcdefghij"));
        assert!(BodyBuffer::new(1, None).finish().is_empty());
    }
}
