// The addon's CPU allocator (cpu_cache.cc): what it keeps for reuse can be handed back when a caller's products end.
#pragma once
#include <cstddef>

namespace gv {
/**
 * Unmaps the huge blocks kept for reuse, frees the opt-in cache's blocks and trims glibc's heap (malloc_trim):
 * memory held for the next product's allocations, given back once no product runs for a while (a run's fold, the
 * next model). Returns the bytes of the blocks released (the heap's trimmed pages are not counted).
 */
size_t releaseIdleMemory();
}  // namespace gv
