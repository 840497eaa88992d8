# portcullis_subsystem(<dir> SOURCES ... [DEPENDS <subsystem dirs>...] [LIBS <targets>...])
# One folder under proxy/ or filters/ = one static library, portcullis_<name>. DEPENDS names the
# subsystems it may use (their dependencies come with them); an #include of any other folder of
# the project fails the build (cmake/CheckIncludes.cmake). That is how the dependency direction
# of DESIGN's layout (api <- base <- net/smtp/dns <- config <- chain <- relay <- server) holds.
function(portcullis_subsystem dir)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPENDS;LIBS" ${ARGN})
  string(REGEX REPLACE "^(proxy|filters)/" "" name "${dir}")
  string(REPLACE "/" "_" name "${name}")
  if(dir MATCHES "^filters/")
    set(name "filter_${name}")
  endif()
  set(target portcullis_${name})

  set(allowed ${dir})
  set(libs "")
  foreach(dep IN LISTS ARG_DEPENDS)
    get_property(dep_target GLOBAL PROPERTY PORTCULLIS_TARGET_${dep})
    get_property(dep_allowed GLOBAL PROPERTY PORTCULLIS_ALLOWED_${dep})
    if(NOT dep_target)
      message(FATAL_ERROR "${dir}: unknown subsystem ${dep} (declare it first)")
    endif()
    list(APPEND libs ${dep_target})
    list(APPEND allowed ${dep_allowed})
  endforeach()
  list(REMOVE_DUPLICATES allowed)
  set_property(GLOBAL PROPERTY PORTCULLIS_TARGET_${dir} ${target})
  set_property(GLOBAL PROPERTY PORTCULLIS_ALLOWED_${dir} ${allowed})

  add_library(${target} STATIC ${ARG_SOURCES})
  target_link_libraries(${target} PUBLIC ${libs} ${ARG_LIBS})

  file(GLOB checked CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/${dir}/*.h
       ${PROJECT_SOURCE_DIR}/${dir}/*.cc)
  set(stamp ${CMAKE_CURRENT_BINARY_DIR}/${name}.includes-checked)
  add_custom_command(
    OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND} -DSUBSYSTEM=${dir} "-DALLOWED=${allowed}" "-DFILES=${checked}"
            -DSTAMP=${stamp} -P ${PROJECT_SOURCE_DIR}/cmake/CheckIncludes.cmake
    DEPENDS ${checked} ${PROJECT_SOURCE_DIR}/cmake/CheckIncludes.cmake
    COMMENT "Checking the includes of ${dir}"
    VERBATIM)
  add_custom_target(${target}_includes DEPENDS ${stamp})
  add_dependencies(${target} ${target}_includes)
endfunction()
