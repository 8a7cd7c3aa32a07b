//! A bounded slab of values indexed by `u32` slots, each with a generation.
//!
//! A shard keeps its connections here: the slot index is the connection's mio token, and
//! the generation tells a reply for a connection that has since closed (and whose slot
//! was reused) from a reply for the connection in the slot now. Slots are reused most
//! recently freed first, so a steady population of connections touches the same memory.

/// A slab of at most `capacity` values.
pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    capacity: usize,
    len: usize,
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// The slab holds `capacity` values already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabFull;

impl<T> Slab<T> {
    /// An empty slab that will hold at most `capacity` values (memory grows on insert).
    pub fn new(capacity: usize) -> Slab<T> {
        assert!(capacity > 0);
        assert!(capacity < u32::MAX as usize);
        Slab { entries: Vec::new(), free: Vec::new(), capacity, len: 0 }
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Slots ever used, held or free: every index a value may be at is below this.
    pub fn slot_count(&self) -> u32 {
        self.entries.len() as u32
    }

    /// Returns true if and only if the slab holds no value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores a value built from its slot index and generation, and returns both.
    pub fn insert_with(&mut self, make: impl FnOnce(u32, u32) -> T) -> Result<(u32, u32), SlabFull> {
        if self.len == self.capacity {
            return Err(SlabFull);
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.entries.push(Entry { generation: 0, value: None });
                (self.entries.len() - 1) as u32
            }
        };
        let entry = &mut self.entries[index as usize];
        assert!(entry.value.is_none());
        entry.generation = entry.generation.wrapping_add(1);
        entry.value = Some(make(index, entry.generation));
        self.len += 1;
        Ok((index, entry.generation))
    }

    /// Removes and returns the value in slot `index`, if any.
    pub fn remove(&mut self, index: u32) -> Option<T> {
        let value = self.entries.get_mut(index as usize)?.value.take()?;
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }

    /// The value in slot `index`, whatever its generation.
    pub fn get_mut(&mut self, index: u32) -> Option<&mut T> {
        self.entries.get_mut(index as usize)?.value.as_mut()
    }

    /// The value in slot `index` if it is still of `generation`.
    pub fn get_current_mut(&mut self, index: u32, generation: u32) -> Option<&mut T> {
        let entry = self.entries.get_mut(index as usize)?;
        if entry.generation != generation {
            return None;
        }
        entry.value.as_mut()
    }

    /// The generation of slot `index`'s current value, if it holds one.
    pub fn generation(&self, index: u32) -> Option<u32> {
        let entry = self.entries.get(index as usize)?;
        entry.value.as_ref().map(|_| entry.generation)
    }

    /// The indices of every value held (slow path: allocates).
    pub fn indices(&self) -> Vec<u32> {
        let held = self.entries.iter().enumerate().filter(|(_, entry)| entry.value.is_some());
        held.map(|(index, _)| index as u32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_with_a_new_generation() {
        let mut slab = Slab::new(2);
        let (first, first_generation) = slab.insert_with(|index, _| index * 10).unwrap();
        let (second, _) = slab.insert_with(|index, _| index * 10).unwrap();
        assert_ne!(first, second);
        assert_eq!(slab.insert_with(|_, _| 0), Err(SlabFull));
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.remove(first), Some(first * 10));
        assert_eq!(slab.remove(first), None);
        assert_eq!(slab.generation(first), None);
        let (reused, reused_generation) = slab.insert_with(|_, generation| generation).unwrap();
        assert_eq!(reused, first);
        assert_ne!(reused_generation, first_generation);
        assert!(slab.get_current_mut(first, first_generation).is_none());
        assert_eq!(slab.get_current_mut(first, reused_generation).copied(), Some(reused_generation));
        assert_eq!(slab.indices(), [first.min(second), first.max(second)]);
        assert_eq!(slab.slot_count(), 2);
    }

    #[test]
    fn missing_slots_are_none() {
        let mut slab: Slab<u8> = Slab::new(4);
        assert!(slab.is_empty());
        assert!(slab.get_mut(3).is_none());
        assert!(slab.get_current_mut(3, 1).is_none());
        assert_eq!(slab.remove(3), None);
    }
}
