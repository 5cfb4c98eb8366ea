//! The Lua scripts of the partition leases: every read and claim of a
//! partition checks its lease inside Redis, atomically with the command.

use std::sync::LazyLock;

use redis::Script;

/// Takes or renews each lease in KEYS for ARGV[1] for ARGV[2] ms: 2 newly
/// taken, 1 renewed, 0 held by another member.
pub(super) static TAKE_LEASES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local out = {}
        for i, lease in ipairs(KEYS) do
          local holder = redis.call('GET', lease)
          if holder == ARGV[1] then
            redis.call('PEXPIRE', lease, ARGV[2])
            out[i] = 1
          elseif not holder then
            redis.call('SET', lease, ARGV[1], 'PX', ARGV[2])
            out[i] = 2
          else
            out[i] = 0
          end
        end
        return out",
    )
});

/// Gives up each lease in KEYS that ARGV[1] holds.
pub(super) static RELEASE_LEASES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        for _, lease in ipairs(KEYS) do
          if redis.call('GET', lease) == ARGV[1] then redis.call('DEL', lease) end
        end
        return 0",
    )
});

/// Claims for ARGV[2] (group ARGV[1]) the entries pending on stream KEYS[2]
/// from cursor ARGV[3], at most ARGV[4], if it holds lease KEYS[1]; nil if not.
pub(super) static CLAIM_IF_LEASED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('GET', KEYS[1]) ~= ARGV[2] then return false end
        return redis.call('XAUTOCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, ARGV[3], 'COUNT', ARGV[4])",
    )
});

/// KEYS: n leases, then their n streams, then the group's members. Reads new
/// entries (group ARGV[1], member ARGV[2], at most ARGV[3]) of the streams
/// whose lease ARGV[2] holds. Returns {streams whose lease is lost, the
/// XREADGROUP reply or {}, when nothing was new {stream, last id} of each to
/// wait on, and how many members the group has}.
pub(super) static READ_IF_LEASED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local n = (#KEYS - 1) / 2
        local members = redis.call('ZCARD', KEYS[#KEYS])
        local streams, lost = {}, {}
        for i = 1, n do
          if redis.call('GET', KEYS[i]) == ARGV[2] then
            table.insert(streams, KEYS[n + i])
          else
            table.insert(lost, KEYS[n + i])
          end
        end
        if #streams == 0 then return {lost, {}, {}, members} end
        local args = {'XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS'}
        for _, s in ipairs(streams) do table.insert(args, s) end
        for _ in ipairs(streams) do table.insert(args, '>') end
        local reply = redis.call(unpack(args))
        if reply then return {lost, reply, {}, members} end
        local tails = {}
        for _, s in ipairs(streams) do
          local last = redis.call('XREVRANGE', s, '+', '-', 'COUNT', 1)
          table.insert(tails, {s, last[1] and last[1][1] or '0-0'})
        end
        return {lost, {}, tails, members}",
    )
});
