-- Test-only rules for portcullis' integration tests: a magic word in the message forces a
-- score, and so an action through local.d/actions.conf.
local function has(task, word)
  local content = task:get_content()
  return content ~= nil and tostring(content):find(word, 1, true) ~= nil
end

rspamd_config.PORTCULLIS_TEST_ADD_HEADER = {
  callback = function(task) return has(task, 'PORTCULLIS-TEST-ADD-HEADER') end,
  score = 60.0,
  description = 'portcullis test: force add header',
  group = 'portcullis_test',
}

rspamd_config.PORTCULLIS_TEST_REWRITE_SUBJECT = {
  callback = function(task) return has(task, 'PORTCULLIS-TEST-REWRITE-SUBJECT') end,
  score = 110.0,
  description = 'portcullis test: force rewrite subject',
  group = 'portcullis_test',
}
