# Builds the Rust library with cargo and wraps its outputs as CMake imported targets.
#
# Cargo, not CMake, knows when Rust sources changed, so cargo runs on every build (a no-op
# takes a fraction of a second) and CMake only declares what it produces.

set(CARGO_PROFILE "release" CACHE STRING
  "Cargo profile used to build libdragent_tunnel (release, dev, or a custom profile)")

# rustup installs cargo in ~/.cargo/bin, which is often not on the PATH of IDEs and CI shells.
find_program(CARGO_EXECUTABLE cargo HINTS "$ENV{CARGO_HOME}/bin" "$ENV{HOME}/.cargo/bin")
if(NOT CARGO_EXECUTABLE)
  message(FATAL_ERROR "cargo not found: install Rust (https://rustup.rs) or set CARGO_EXECUTABLE")
endif()

# The native libraries a program must link next to libdragent_tunnel.a. This is what
# `rustc --print native-static-libs` says for the Rust standard library on Linux; it is
# written down here because CMake needs it before anything is built. The test
# `native_static_libs` compares it with what the compiler prints, so a drift fails loudly.
set(DTUN_NATIVE_STATIC_LIBS gcc_s util rt pthread m dl c)
# DTUN_LINK_NATIVE_LIBS, what the .pc file and the CMake targets ask programs to link, is
# that list without gcc_s: the unwinder the Rust code needs
# (_Unwind_*) is what every gcc and clang driver adds on its own, `--as-needed -lgcc_s` for
# a dynamic program and the archive libgcc_eh.a for `-static`. Naming -lgcc_s ourselves would
# make `-static` fail (there is no libgcc_s.a) and a program need libgcc_s.so.1 for nothing.
set(DTUN_LINK_NATIVE_LIBS ${DTUN_NATIVE_STATIC_LIBS})
list(REMOVE_ITEM DTUN_LINK_NATIVE_LIBS gcc_s)

# Negotiate (Kerberos) proxy auth: the cargo feature `gssapi`, on when MIT krb5's GSSAPI is
# found (pkg-config module krb5-gssapi, Debian libkrb5-dev; its bindgen also needs libclang).
# The library then needs libgssapi_krb5: rustc names it first in native-static-libs, so it
# leads both lists, and the .pc file and the CMake targets ask static links for -lgssapi_krb5.
option(DTUN_GSSAPI "Negotiate (Kerberos) proxy auth through the system GSSAPI, when krb5-gssapi is found" ON)
set(DTUN_CARGO_FEATURES "")
if(DTUN_GSSAPI)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(DTUN_KRB5_GSSAPI QUIET krb5-gssapi)
  endif()
  if(DTUN_KRB5_GSSAPI_FOUND)
    set(DTUN_CARGO_FEATURES gssapi)
    list(INSERT DTUN_NATIVE_STATIC_LIBS 0 gssapi_krb5)
    list(INSERT DTUN_LINK_NATIVE_LIBS 0 gssapi_krb5)
    message(STATUS "dragent-tunnel: Negotiate (Kerberos) on: krb5-gssapi ${DTUN_KRB5_GSSAPI_VERSION}")
  else()
    message(STATUS "dragent-tunnel: Negotiate (Kerberos) off: pkg-config module krb5-gssapi not found (Debian: libkrb5-dev)")
  endif()
endif()

# Builds that users do (README "Offline and cross builds"):
#  - Cargo.lock is always honoured (--locked): a build never resolves other versions.
#  - Offline: DTUN_CARGO_OFFLINE (default: the CARGO_NET_OFFLINE environment variable at
#    configure time) passes --offline, for a machine without network whose ~/.cargo holds the
#    sources or whose .cargo/config.toml points at a `cargo vendor` directory.
#  - Target: DTUN_RUST_TARGET (default: the CARGO_BUILD_TARGET environment variable) passes
#    --target, and cargo's outputs are then found under <target dir>/<triple>/<profile>.
set(_dtun_offline_default OFF)
if("$ENV{CARGO_NET_OFFLINE}" MATCHES "^(1|[Tt][Rr][Uu][Ee]|[Yy][Ee][Ss]|[Oo][Nn])$")
  set(_dtun_offline_default ON)
endif()
option(DTUN_CARGO_OFFLINE "Run cargo with --offline (default: CARGO_NET_OFFLINE)" ${_dtun_offline_default})
set(DTUN_RUST_TARGET "$ENV{CARGO_BUILD_TARGET}" CACHE STRING
  "Rust target triple to build for (default: CARGO_BUILD_TARGET; empty: the host)")

# The output directory cargo uses for a profile: `dev` and `test` build into `debug`,
# `bench` into `release`, any other profile into a directory of its own name.
function(dtun_cargo_profile_dir out profile)
  if(profile STREQUAL "dev" OR profile STREQUAL "test")
    set(${out} "debug" PARENT_SCOPE)
  elseif(profile STREQUAL "bench")
    set(${out} "release" PARENT_SCOPE)
  else()
    set(${out} "${profile}" PARENT_SCOPE)
  endif()
endfunction()

# The `../..` path from an install directory (relative to the prefix) back to the prefix.
function(dtun_relative_to_prefix out dir)
  if(IS_ABSOLUTE "${dir}")
    message(FATAL_ERROR "install directory ${dir} must be relative to the prefix for a relocatable package")
  endif()
  # Any absolute root works: only the number of components between the two matters.
  file(RELATIVE_PATH rel "/prefix/${dir}" "/prefix")
  set(${out} "${rel}" PARENT_SCOPE)
endfunction()

# Defines:
#   target dragent_tunnel_cargo                     runs cargo, stages the shared library
#   DragentTunnel::dragent_tunnel                   the shared library (SONAME libdragent_tunnel.so.0)
#   DragentTunnel::dragent_tunnel_static            the static library and its native libraries
# and, in the caller's scope:
#   DTUN_SONAME, DTUN_SHARED_REAL_NAME, DTUN_SHARED_LINK_NAME   the three names of the .so
#   DTUN_STAGE_DIR          where the .so sits under those three names
#   DTUN_CARGO_STATIC_LIB   cargo's libdragent_tunnel.a
#   DTUN_CARGO_TARGET_DIR   cargo's target directory for this build tree
#   DTUN_CARGO_OUT_DIR      where cargo puts this build's outputs (<target dir>[/<triple>]/<profile>)
#   DTUN_CARGO_ENV          `cmake -E env` prefix that runs cargo in that target directory
#   DTUN_CARGO_BUILD_ARGS   the cargo arguments of the library build (tests reuse them)
#   DTUN_CARGO_FLAGS        --locked, and --offline / --target when asked for
function(dtun_cargo_library)
  set(soname "libdragent_tunnel.so.${PROJECT_VERSION_MAJOR}")
  set(real_name "libdragent_tunnel.so.${PROJECT_VERSION}")
  set(link_name "libdragent_tunnel.so")

  # A target directory of our own: sharing target/ with plain `cargo build`/`cargo test`
  # would make the flags of each (profile, target) rebuild the other's.
  # DTUN_CARGO_TARGET_DIR lets a second build tree of the same flags (scripts/package.sh)
  # reuse the first one's cargo build instead of compiling everything again.
  set(DTUN_CARGO_TARGET_DIR "${CMAKE_CURRENT_BINARY_DIR}/cargo" CACHE PATH
    "cargo's target directory for this build tree")
  set(target_dir "${DTUN_CARGO_TARGET_DIR}")
  dtun_cargo_profile_dir(profile_dir "${CARGO_PROFILE}")
  set(cargo_flags --locked)
  if(DTUN_CARGO_OFFLINE)
    list(APPEND cargo_flags --offline)
  endif()
  if(DTUN_RUST_TARGET)
    list(APPEND cargo_flags --target "${DTUN_RUST_TARGET}")
    set(out_dir "${target_dir}/${DTUN_RUST_TARGET}/${profile_dir}")
  else()
    set(out_dir "${target_dir}/${profile_dir}")
  endif()
  set(stage_dir "${CMAKE_CURRENT_BINARY_DIR}/lib")
  set(version_script "${PROJECT_SOURCE_DIR}/abi/libdragent_tunnel.map")

  # --print native-static-libs puts the staticlib's link line in the build log (the test
  # native_static_libs reads it). CARGO_BUILD_TARGET is cleared: --target says it, or the
  # host is meant.
  set(feature_args "")
  if(DTUN_CARGO_FEATURES)
    string(JOIN "," features ${DTUN_CARGO_FEATURES})
    set(feature_args --features "${features}")
  endif()
  set(build_args
    rustc --lib --package dragent-tunnel --profile "${CARGO_PROFILE}" ${cargo_flags} ${feature_args}
    --manifest-path "${PROJECT_SOURCE_DIR}/Cargo.toml"
    -- --print native-static-libs)
  set(cargo_env "${CMAKE_COMMAND}" -E env "CARGO_TARGET_DIR=${target_dir}"
    --unset=CARGO_BUILD_TARGET)

  # The shared library is linked here from cargo's static library (the same object code), not
  # taken from cargo's cdylib: rustc hands the linker an anonymous version script of its own
  # for a cdylib, and GNU ld lets it win over a second one, so a cdylib's symbols cannot be
  # put under a version node on stable Rust. abi/libdragent_tunnel.map exports exactly the
  # dtun_* functions, each as dtun_x@@DTUN_0, and hides everything else. The other flags are
  # the ones rustc links a cdylib with, plus -z nodelete (see build.rs) and the SONAME.
  separate_arguments(shared_linker_flags UNIX_COMMAND "${CMAKE_SHARED_LINKER_FLAGS}")
  list(TRANSFORM DTUN_NATIVE_STATIC_LIBS PREPEND "-l" OUTPUT_VARIABLE native_flags)
  set(link_command "${CMAKE_C_COMPILER}" ${shared_linker_flags} -shared
    -o "${stage_dir}/${real_name}"
    -Wl,--whole-archive "${out_dir}/libdragent_tunnel.a" -Wl,--no-whole-archive
    "-Wl,--version-script=${version_script}" "-Wl,-soname,${soname}"
    -Wl,-z,nodelete -Wl,-z,relro,-z,now -Wl,-z,noexecstack -Wl,--gc-sections
    -Wl,--as-needed -Wl,-O1 -Wl,--strip-debug ${native_flags})

  # The linker records the SONAME in programs, and the loader then looks for that file name:
  # stage the library under its three conventional names (real file, SONAME link, dev link).
  add_custom_target(dragent_tunnel_cargo ALL
    COMMAND ${cargo_env} "${CARGO_EXECUTABLE}" ${build_args}
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${stage_dir}"
    COMMAND ${link_command}
    COMMAND "${CMAKE_COMMAND}" -E create_symlink "${real_name}" "${stage_dir}/${soname}"
    COMMAND "${CMAKE_COMMAND}" -E create_symlink "${soname}" "${stage_dir}/${link_name}"
    BYPRODUCTS
      "${out_dir}/libdragent_tunnel.a"
      "${stage_dir}/${real_name}"
      "${stage_dir}/${soname}"
      "${stage_dir}/${link_name}"
    WORKING_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}"
    USES_TERMINAL
    COMMENT "cargo: building libdragent_tunnel (profile ${CARGO_PROFILE})"
    VERBATIM)

  set(include_dir "${CMAKE_CURRENT_SOURCE_DIR}/include")

  add_library(dragent_tunnel_shared SHARED IMPORTED GLOBAL)
  set_target_properties(dragent_tunnel_shared PROPERTIES
    IMPORTED_LOCATION "${stage_dir}/${real_name}"
    IMPORTED_SONAME "${soname}"
    INTERFACE_INCLUDE_DIRECTORIES "${include_dir}")
  add_dependencies(dragent_tunnel_shared dragent_tunnel_cargo)
  add_library(DragentTunnel::dragent_tunnel ALIAS dragent_tunnel_shared)

  add_library(dragent_tunnel_static STATIC IMPORTED GLOBAL)
  set_target_properties(dragent_tunnel_static PROPERTIES
    IMPORTED_LOCATION "${out_dir}/libdragent_tunnel.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES C
    INTERFACE_INCLUDE_DIRECTORIES "${include_dir}"
    INTERFACE_LINK_LIBRARIES "${DTUN_LINK_NATIVE_LIBS}")
  add_dependencies(dragent_tunnel_static dragent_tunnel_cargo)
  add_library(DragentTunnel::dragent_tunnel_static ALIAS dragent_tunnel_static)

  set(DTUN_SONAME "${soname}" PARENT_SCOPE)
  set(DTUN_SHARED_REAL_NAME "${real_name}" PARENT_SCOPE)
  set(DTUN_SHARED_LINK_NAME "${link_name}" PARENT_SCOPE)
  set(DTUN_STAGE_DIR "${stage_dir}" PARENT_SCOPE)
  set(DTUN_CARGO_STATIC_LIB "${out_dir}/libdragent_tunnel.a" PARENT_SCOPE)
  set(DTUN_CARGO_TARGET_DIR "${target_dir}" PARENT_SCOPE)
  set(DTUN_CARGO_OUT_DIR "${out_dir}" PARENT_SCOPE)
  set(DTUN_CARGO_FLAGS ${cargo_flags} PARENT_SCOPE)
  set(DTUN_CARGO_ENV ${cargo_env} PARENT_SCOPE)
  set(DTUN_CARGO_BUILD_ARGS ${build_args} PARENT_SCOPE)
endfunction()
