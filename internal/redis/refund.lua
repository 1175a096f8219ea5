-- refund.lua gives back an event taken by take.lua whose request was then
-- refused: by another limit, or by the address's script (split.go).
--
-- KEYS: the limit's key
-- ARGV: now, t
-- Reply: 1 when something was given back.
return gcra_refund(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
