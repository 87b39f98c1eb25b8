# Debian packages of dragent-tunnel, made by CPack from the install components
# (scripts/package.sh runs it; README "Packages"):
#
#   libdragent-tunnel0       runtime  libdragent_tunnel.so.X.Y.Z and its SONAME link
#   libdragent-tunnel-dev    dev      headers, libdragent_tunnel.a, the unversioned .so link,
#                                     dragent-tunnel.pc, the DragentTunnel CMake package
#   dragent-tunnel-tools     tools    dtun-check and its man page
#
# CPack rather than cargo-deb: the files to package are the CMake build's (the .so linked with
# the version script and SONAME, the .pc and CMake package), which cargo-deb does not know; and
# CPack's DEB generator comes with cmake, while cargo-deb would be one more tool to install.
#
# Versions come from Cargo.toml (through project()); Depends of each package from
# dpkg-shlibdeps (dpkg-dev), plus the packages' own relations; the runtime package carries a
# shlibs file (libdragent-tunnel0 (>= X.Y.Z)) and the ldconfig calls. Each package has
# /usr/share/doc/<package>/copyright (packaging/copyright.in, with the licences of the Rust
# crates linked into the library, from Cargo.lock) and changelog.gz (CHANGELOG.md).

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "dragent-tunnel")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_CONTACT "dragent-tunnel maintainers <maintainers@dragent-tunnel.invalid>")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://github.com/draios/dragent-tunnel")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev tools)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION "libs")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS OFF)
set(_dtun_deb_version "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME "libdragent-tunnel${PROJECT_VERSION_MAJOR}")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION "libs")
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "HTTP CONNECT tunnel from a monitoring agent to its collector (shared library)
 libdragent_tunnel opens a byte stream from a monitoring agent (Sysdig's dragent)
 to its collector, directly or through an HTTP CONNECT proxy with optional Basic
 auth and TLS to the proxy, with TLS to the collector end to end. It reads the
 agent's dragent.yaml. This package holds the shared library.")
# A shlibs file for the package that holds shared objects (only the runtime one does).
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME "libdragent-tunnel-dev")
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION "libdevel")
set(CPACK_DEBIAN_DEV_DESCRIPTION "HTTP CONNECT tunnel from a monitoring agent to its collector (development files)
 The C header dragent_tunnel.h, the C++ header dragent_tunnel.hpp, the static
 library, the pkg-config module dragent-tunnel and the CMake package
 DragentTunnel.")
# The headers and the .so link are this version's: exactly this runtime.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
  "${CPACK_DEBIAN_RUNTIME_PACKAGE_NAME} (= ${_dtun_deb_version})")
# The archive is not a program: nothing for dpkg-shlibdeps to read.
set(CPACK_DEBIAN_DEV_PACKAGE_SHLIBDEPS OFF)

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME "dragent-tunnel-tools")
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "HTTP CONNECT tunnel from a monitoring agent to its collector (diagnostic)
 dtun-check DRAGENT_YAML says whether the tunnel to the collector that a
 dragent.yaml describes opens, by which route, and when it does not, why and
 which key to change.")
# dpkg-shlibdeps names the system libraries; it finds libdragent_tunnel.so.0 in the build
# tree (-l), but that is in no installed package while we build, so CPack's
# --ignore-missing-info skips it and we name it here.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS "${DTUN_STAGE_DIR}")
set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS
  "${CPACK_DEBIAN_RUNTIME_PACKAGE_NAME} (>= ${PROJECT_VERSION})")

# Architecture: CPack asks `dpkg --print-architecture` (amd64, arm64), for every package.

# copyright and changelog.gz for every package, in /usr/share/doc/<package>/.
set(DTUN_CRATE_LICENSES "(see Cargo.lock: the crates were not listed at configure time)")
find_program(GZIP_EXECUTABLE gzip)
set(_dtun_crates_file "${CMAKE_CURRENT_BINARY_DIR}/crate-licenses.txt")
execute_process(
  COMMAND ${DTUN_CARGO_ENV} "${CARGO_EXECUTABLE}" tree --locked --offline
          --manifest-path "${PROJECT_SOURCE_DIR}/Cargo.toml" --package dragent-tunnel
          --edges normal --prefix none --no-dedupe --format "{p}: {l}"
  OUTPUT_VARIABLE _dtun_crates RESULT_VARIABLE _dtun_tree_status ERROR_QUIET)
if(_dtun_tree_status EQUAL 0)
  string(REGEX REPLACE " \\([^)]*\\)" "" _dtun_crates "${_dtun_crates}")
  string(REPLACE "\n" ";" _dtun_crates "${_dtun_crates}")
  list(REMOVE_DUPLICATES _dtun_crates)
  list(FILTER _dtun_crates EXCLUDE REGEX "^(dragent-tunnel |)$")
  list(SORT _dtun_crates)
  list(TRANSFORM _dtun_crates PREPEND " ")
  string(JOIN "\n" DTUN_CRATE_LICENSES ${_dtun_crates})
endif()
configure_file("${PROJECT_SOURCE_DIR}/packaging/copyright.in"
  "${CMAKE_CURRENT_BINARY_DIR}/copyright" @ONLY)
set(_dtun_changelog_gz "${CMAKE_CURRENT_BINARY_DIR}/changelog.gz")
if(GZIP_EXECUTABLE)
  execute_process(COMMAND "${GZIP_EXECUTABLE}" -9 -n -c "${PROJECT_SOURCE_DIR}/CHANGELOG.md"
    OUTPUT_FILE "${_dtun_changelog_gz}")
endif()
foreach(_dtun_component runtime dev tools)
  string(TOUPPER "${_dtun_component}" _dtun_upper)
  set(_dtun_doc "${CMAKE_INSTALL_DATAROOTDIR}/doc/${CPACK_DEBIAN_${_dtun_upper}_PACKAGE_NAME}")
  install(FILES "${CMAKE_CURRENT_BINARY_DIR}/copyright" DESTINATION "${_dtun_doc}"
    COMPONENT ${_dtun_component} EXCLUDE_FROM_ALL)
  if(GZIP_EXECUTABLE)
    install(FILES "${_dtun_changelog_gz}" DESTINATION "${_dtun_doc}"
      COMPONENT ${_dtun_component} EXCLUDE_FROM_ALL)
  endif()
endforeach()

include(CPack)
