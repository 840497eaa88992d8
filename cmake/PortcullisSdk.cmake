# The plugin SDK, both sides of it.
#
# portcullis_export_sdk(<target>): an executable that loads plugins (the daemon, the unit tests)
#   links every object of the API implementation (proxy/api) and exports the portcullis
#   namespace's symbols (cmake/sdk_exports.list), so that a plugin's references to Verdict,
#   Reply, Next, ConfigSection... resolve against it at dlopen(RTLD_NOW). The objects are
#   linked whole because the executable may not use every SDK function a plugin calls. Only
#   the namespace is exported, not everything (-rdynamic would export yaml-cpp, spdlog and
#   libstdc++ instantiations too, and let them interpose on a plugin's own copies).
#
# portcullis_install_sdk(): installs what a plugin author builds against:
#   <prefix>/include/portcullis/*.h                  the public API (and the generated version)
#   <prefix>/lib/cmake/portcullis/                   find_package(portcullis 0.2) -> portcullis::sdk
#   <prefix>/lib/pkgconfig/portcullis.pc             pkg-config --cflags portcullis
#   <prefix>/lib/portcullis/plugins/                 the documented place for plugins
#
# portcullis_sdk (in-tree) is the same INTERFACE target the package exports, for the test
# plugins that the build makes itself.
include(CMakePackageConfigHelpers)
include(GNUInstallDirs)

add_library(portcullis_sdk INTERFACE)
target_include_directories(portcullis_sdk INTERFACE
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
  $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_compile_features(portcullis_sdk INTERFACE cxx_std_20)
set_target_properties(portcullis_sdk PROPERTIES EXPORT_NAME sdk)

function(portcullis_export_sdk target)
  target_sources(${target} PRIVATE $<TARGET_OBJECTS:portcullis_api>)
  target_link_options(${target} PRIVATE
    "LINKER:--dynamic-list=${PROJECT_SOURCE_DIR}/cmake/sdk_exports.list")
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS
    ${PROJECT_SOURCE_DIR}/cmake/sdk_exports.list)
endfunction()

function(portcullis_install_sdk)
  set(cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/portcullis)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/portcullis
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
  install(FILES ${PROJECT_BINARY_DIR}/include/portcullis/sdk_version.h
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/portcullis)
  install(TARGETS portcullis_sdk EXPORT portcullisTargets)
  install(EXPORT portcullisTargets NAMESPACE portcullis:: DESTINATION ${cmake_dir})
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/portcullisConfig.cmake.in
    ${PROJECT_BINARY_DIR}/portcullisConfig.cmake INSTALL_DESTINATION ${cmake_dir}
    PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR)
  # 0.x: a minor release may change the API, so 0.2 accepts 0.2.* only. The loader's ABI tag
  # is stricter still (the exact release, compiler and library ABI).
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/portcullisConfigVersion.cmake
    VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
  install(FILES ${PROJECT_BINARY_DIR}/portcullisConfig.cmake
    ${PROJECT_BINARY_DIR}/portcullisConfigVersion.cmake DESTINATION ${cmake_dir})
  file(RELATIVE_PATH PC_UP /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)  # "../.." (or deeper)
  string(REGEX REPLACE "/$" "" PC_UP "${PC_UP}")
  configure_file(${PROJECT_SOURCE_DIR}/cmake/portcullis.pc.in ${PROJECT_BINARY_DIR}/portcullis.pc
    @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/portcullis.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
  install(DIRECTORY DESTINATION ${CMAKE_INSTALL_LIBDIR}/portcullis/plugins)
endfunction()
