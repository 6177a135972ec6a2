//! Catch-up paging shared by the newest-first polled feeds (Reddit listings with `after`,
//! StockTwits streams with `max`): a poll reads the newest page; when that page does not reach
//! the newest item of the previous poll, older pages follow at once, each committed with its
//! records and the catch-up's position (so a restart resumes it), until the target is reached,
//! the provider has nothing older, or the page limit cuts it (reported as a gap, never silent).

/// One page of a newest-first listing read back towards the newest item of the previous poll.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paging<T> {
    /// The newest item of the previous poll (`None`: the first poll ever, which reads one page).
    pub target: Option<T>,
    /// The newest item of this catch-up so far (this page included).
    pub newest: Option<T>,
    /// Pages read in this catch-up, this one included.
    pub pages: u32,
    /// The oldest item of this page.
    pub page_oldest: Option<T>,
    /// The provider has older items after this page.
    pub has_older: bool,
}

/// What follows a page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step<T> {
    /// The catch-up is over: the new newest item, and, when it stopped at the page limit
    /// before reaching the target, the window left unread (target, oldest read, pages read).
    Done { newest: Option<T>, cut: Option<(T, T, u32)> },
    /// Read the next older page.
    Next { target: T, newest: T },
}

impl<T: PartialOrd + Copy> Paging<T> {
    /// Done when there is no target (first poll), the page reached it, the provider has no
    /// older page, or the page was empty; otherwise the next page, up to `limit` pages.
    pub fn step(&self, limit: u32) -> Step<T> {
        let (Some(target), Some(oldest), Some(newest)) = (self.target, self.page_oldest, self.newest) else {
            return Step::Done { newest: self.newest, cut: None };
        };
        if oldest <= target || !self.has_older {
            return Step::Done { newest: Some(newest), cut: None };
        }
        if self.pages >= limit {
            return Step::Done { newest: Some(newest), cut: Some((target, oldest, self.pages)) };
        }
        Step::Next { target, newest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(target: Option<u64>, newest: u64, pages: u32, oldest: u64, has_older: bool) -> Paging<u64> {
        Paging { target, newest: Some(newest), pages, page_oldest: Some(oldest), has_older }
    }

    #[test]
    fn a_catch_up_reads_back_to_the_target_and_no_further() {
        // The first poll ever reads one page, whatever it holds.
        assert_eq!(page(None, 90, 1, 60, true).step(3), Step::Done { newest: Some(90), cut: None });
        // The newest page reaches the target: an ordinary poll.
        assert_eq!(page(Some(70), 90, 1, 60, true).step(3), Step::Done { newest: Some(90), cut: None });
        // It does not: the next older page, then the one that reaches it.
        assert_eq!(page(Some(10), 90, 1, 60, true).step(3), Step::Next { target: 10, newest: 90 });
        assert_eq!(page(Some(10), 90, 2, 10, true).step(3), Step::Done { newest: Some(90), cut: None });
        // The provider has nothing older: done, nothing cut.
        assert_eq!(page(Some(10), 90, 2, 40, false).step(3), Step::Done { newest: Some(90), cut: None });
        // The page limit before the target: cut, with the window left unread.
        assert_eq!(page(Some(10), 90, 3, 40, true).step(3), Step::Done { newest: Some(90), cut: Some((10, 40, 3)) });
        // An empty page: done, the newest kept.
        let empty = Paging { target: Some(10), newest: None, pages: 1, page_oldest: None, has_older: false };
        assert_eq!(empty.step(3), Step::Done { newest: None, cut: None });
    }
}
