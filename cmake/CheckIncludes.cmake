# Build-time check of one subsystem's includes (run by cmake -P from portcullis_subsystem()).
# Every quoted project include ("proxy/<sub>/...", "filters/<f>/...") must name the subsystem
# itself or one it declared as a dependency; anything else fails the build, naming the line.
# Inputs: SUBSYSTEM (e.g. proxy/relay), ALLOWED (;-list of path prefixes), FILES, STAMP.
set(bad "")
foreach(file IN LISTS FILES)
  file(STRINGS "${file}" lines REGEX "^[ \t]*#[ \t]*include[ \t]+\"")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]+\"([^\"]+)\".*$" "\\1" inc "${line}")
    if(NOT inc MATCHES "^(proxy|filters)/")
      continue()  # the public API (portcullis/...), tests' support headers, system headers
    endif()
    set(ok FALSE)
    foreach(prefix IN LISTS ALLOWED)
      string(FIND "${inc}" "${prefix}/" at)
      if(at EQUAL 0)
        set(ok TRUE)
      endif()
    endforeach()
    if(NOT ok)
      string(APPEND bad "\n  ${file}: #include \"${inc}\"")
    endif()
  endforeach()
endforeach()
if(bad)
  string(REPLACE ";" ", " allowed_text "${ALLOWED}")
  message(FATAL_ERROR "${SUBSYSTEM} may include only ${allowed_text} (and portcullis/):${bad}")
endif()
file(TOUCH "${STAMP}")
