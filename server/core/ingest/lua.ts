// Lua shared by the ingest path's Redis scripts (rate limits, sessions), spliced into their text.

/**
 * `inPieces(list, size, each)` calls `each(from, ...)` with at most `size` of the list's values at
 * a time, `from` being the first one's index: a command given a whole batch's keys or fields
 * through unpack() fails past ~8,000 values ("too many results to unpack").
 */
export const LUA_IN_PIECES = `
local function inPieces(list, size, each)
  for i = 1, #list, size do each(i, unpack(list, i, math.min(i + size - 1, #list))) end
end
`;
