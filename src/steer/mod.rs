//! The ranking engine: which nodes are best for the clients of each place, before health is
//! known. It scores nodes (`score`), orders and picks them (`order`), ranks every place of a
//! database at once by regions (`regions`), damps answers so they do not oscillate
//! (`damping`), and keeps the result as a ranked table per steered name (`table`).
//!
//! Rankings depend on policy, geography and measurements, never on health: they are made
//! once per policy load or latency change, off the query path. `answer` picks healthy nodes
//! from them at every health change; queries only index what `answer` built.
//!
//! # Glossary
//!
//! The words the code here uses, defined once:
//!
//! - **row**: one way a client can be matched to candidates: a rule of the steered name, in
//!   policy order, then the `default` pseudo-rule (clients the database cannot place).
//! - **column**: one kind of client position: every place of the GeoIP database, then the
//!   unlocated pseudo-place, then every measured prefix or AS group (which stands where the
//!   database puts its network). Places are numbered in Morton order of their positions, so
//!   neighbouring columns mostly agree and every per-column table is kept as runs
//!   (`crate::runs`): a name costs its decisions, not the database's size.
//! - **cell**: a (row, column) pair; damping state is kept per cell.
//! - **candidate group**: rows with the same candidate list (the `default` pseudo-rule often
//!   repeats the catch-all rule) are ranked once, as one group.
//! - **profile**: what a column's candidates and scores depend on besides its position: the
//!   fences it is inside and the measured groups it belongs to. Columns of one profile rank
//!   the same candidates with the same score terms.
//! - **family**: IPv4 (0) or IPv6 (1); a node answers a family when it has an address of it.
//! - **start**: the first nodes of a cell's ranking, per family: `answers + START_SLACK`
//!   nodes (the whole ranking when a row has at most `WHOLE_RANKING_NODES` candidates), and
//!   the top node for damping. Most cells are answered from their start alone.
//! - **region**: a range of places in Morton order (a cell of the globe); a start found for
//!   a region holds for every place in it when the score bounds of its first nodes do not
//!   overlap.
//! - **class**: cells with the same (damped) start and the same carrier choice: what a health
//!   change picks for once, however many places share it.
//! - **head**: classes whose starts begin alike (the first `answers + START_SLACK` of each
//!   family): what the address table tells apart, and one pick for all its classes when
//!   that prefix decides.
//! - **split**: a class whose start cannot decide under the current health (more of its
//!   nodes down than the slack); its cells read on into their start among the healthy nodes.
//!   Only where a query can read the row (its **reach**: where it is the column's geo rule,
//!   or every column for a row subnet rules lead to) are split cells answered.
//! - **split runs**: a row's runs of split classes within its reach, in column order. Kept
//!   with the answers; the next build drops those of classes that decide again and adds
//!   those of classes split anew (from the ranking's runs by class), instead of reading
//!   whole rows.
//! - **healthy start**: a cell's start among the healthy nodes only, `answers` deep. Kept
//!   with the answers, so the next health change ranks again only the columns whose
//!   healthy start holds a changed node, and the rest among theirs and the risen nodes.
//! - **ranked ahead**: healthy starts, one node deeper than a pick reads, of the columns
//!   where a class is split or one failure from it, ranked after each build while the
//!   publisher waits (`answer::ahead`): the build after a failure carries them without the
//!   fallen node instead of ranking those columns while the change waits.
//! - **pair**: a (split class, healthy start); cells of one pair have one answer. A pair
//!   whose class and healthy start hold the same nodes as at the build before, none of
//!   them changed, keeps its answer there (`answer`'s lent pairs).
//! - **incumbent**: the node a cell currently answers first, which a challenger replaces
//!   only after beating it by the margin for the hold time (answer damping). Not to be
//!   confused with health flap damping, which lives in `health::flap`.
//! - **spread group**: nodes of a start about as near as its first (`spread: {within}`),
//!   of one tier and fallback level, among which a client's network draws by weight.
//! - **carrier choice**: for nodes with several addresses of a family, the address (carrier
//!   line) measured best for a column.

pub mod damping;
pub mod order;
pub mod regions;
pub mod score;
pub mod spread;
pub mod table;

pub use damping::{DampingState, Incumbent};
pub use order::{Availability, Pick, pick, policy_availability, rank};
pub use table::{Rankings, rank_all};
