//! Byte offsets to 1-based line and column numbers, from line starts found once.

/// The starts of a text's lines, so that a position costs one binary search.
///
/// Computing each problem's line by counting newlines from the start of the file made
/// validation quadratic in the number of problems; this index is built in one pass.
#[derive(Debug)]
pub(super) struct Lines<'t> {
    text: &'t str,
    /// Byte offset of the first character of each line; `starts[0]` is 0.
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    /// Indexes `text`.
    pub(super) fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Lines { text, starts }
    }

    /// The 1-based line and column of the byte at `offset` (clamped to the text). The
    /// column counts characters, as editors do, within that one line only.
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // `starts[0]` is 0, so at least one start is at or before `offset`.
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\n\"ü\" = 2\n\nlast";
        let lines = Lines::new(text);
        assert_eq!(lines.position(0), (1, 1));
        assert_eq!(lines.position(4), (1, 5));
        assert_eq!(lines.position(5), (1, 6), "the newline ends its line");
        assert_eq!(lines.position(6), (2, 1));
        let after_u = text.find("\" =").unwrap();
        assert_eq!(lines.position(after_u), (2, 3), "ü is one column");
        assert_eq!(lines.position(text.find("last").unwrap()), (4, 1));
        assert_eq!(lines.position(usize::MAX), (4, 5), "clamped to the end");
    }
}
