# Installs the files whose paths depend on the install prefix given at
# install time (`cmake --install build --prefix /usr`), not only on
# CMAKE_INSTALL_PREFIX at configure time: the configuration, and the
# systemd unit with ExecStart and --config pointing at this install. As in
# GNUInstallDirs, a /usr prefix keeps its configuration in /etc, any other
# in PREFIX/etc. Run by install(SCRIPT); input: HAWIYA_SOURCE_DIR.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(sysconfdir "/etc")
else()
  set(sysconfdir "${prefix}/etc")
endif()
set(deploy "${HAWIYA_SOURCE_DIR}/deploy")

# An operator's edited configuration is left alone.
set(config "$ENV{DESTDIR}${sysconfdir}/hawiya/hawiya.textproto")
if(EXISTS "${config}")
  message(STATUS "Keeping: ${config}")
else()
  # file(INSTALL) puts DESTDIR in front of an absolute DESTINATION itself.
  file(INSTALL "${deploy}/hawiya.textproto" DESTINATION "${sysconfdir}/hawiya")
endif()

file(READ "${deploy}/systemd/hawiya.service" unit)
string(REPLACE "/usr/bin/" "${prefix}/bin/" unit "${unit}")
string(REPLACE "/etc/hawiya/" "${sysconfdir}/hawiya/" unit "${unit}")
string(REPLACE "file:///usr/share/doc/hawiya/"
       "file://${prefix}/share/doc/hawiya/" unit "${unit}")
set(unit_dir "$ENV{DESTDIR}${prefix}/lib/systemd/system")
message(STATUS "Installing: ${unit_dir}/hawiya.service")
file(MAKE_DIRECTORY "${unit_dir}")
file(WRITE "${unit_dir}/hawiya.service" "${unit}")

file(INSTALL "${deploy}/systemd/hawiya.sysusers"
     DESTINATION "${prefix}/lib/sysusers.d" RENAME hawiya.conf)
