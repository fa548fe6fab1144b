-- Set a poison entry aside: acknowledge it, copy it to the partition's dead-letter
-- stream with its error, delete it from the settlement stream. Atomic, so an entry is
-- dead-lettered once even when two workers give up on it at the same time. All keys
-- carry the partition's hash tag.
-- KEYS[1] - settlement stream partition   KEYS[2] - its dead-letter stream
-- KEYS[3] - its failed-attempts hash
-- ARGV[1] - consumer group  ARGV[2] - entry id  ARGV[3] - error  ARGV[4] - attempts
-- ARGV[5] - now ms          ARGV[6] - the entry's fields (JSON)  ARGV[7] - dead letters kept
-- Returns the dead-letter id, or '' when the entry was no longer pending (done already)
local group, entry = ARGV[1], ARGV[2]
if redis.call('XACK', KEYS[1], group, entry) == 0 then return '' end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'entry', entry,
                      'error', ARGV[3], 'attempts', ARGV[4], 'at', ARGV[5], 'fields', ARGV[6])
redis.call('XDEL', KEYS[1], entry)
redis.call('HDEL', KEYS[3], entry, entry .. ':error')
return id
