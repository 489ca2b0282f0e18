# install() rules and Debian packages (cpack -G DEB): fleetd (device node,
# fleetctl) and fleetd-cloud, each with its systemd unit and example config.
set(FLEETD_UNIT_DIR /lib/systemd/system)

install(TARGETS fleetd fleetctl RUNTIME DESTINATION bin COMPONENT edge)
install(FILES config/edge.ini DESTINATION /etc/fleetd COMPONENT edge)
install(FILES dist/systemd/fleetd.service DESTINATION ${FLEETD_UNIT_DIR}
  COMPONENT edge)
# Debian wants a machine-readable copyright pointing at common-licenses and
# a gzipped changelog (lintian errors otherwise).
set(FLEETD_CHANGELOG_GZ ${CMAKE_BINARY_DIR}/changelog.gz)
execute_process(COMMAND gzip -9nc ${PROJECT_SOURCE_DIR}/dist/debian/changelog
  OUTPUT_FILE ${FLEETD_CHANGELOG_GZ})
foreach(pkg_component fleetd:edge fleetd-cloud:cloud)
  string(REPLACE ":" ";" pair ${pkg_component})
  list(GET pair 0 pkg)
  list(GET pair 1 component)
  install(FILES dist/debian/copyright ${FLEETD_CHANGELOG_GZ}
    DESTINATION share/doc/${pkg} COMPONENT ${component})
endforeach()
install(FILES README.md DESTINATION share/doc/fleetd COMPONENT edge)

install(TARGETS fleetd-cloud RUNTIME DESTINATION bin COMPONENT cloud)
install(FILES config/cloud.ini DESTINATION /etc/fleetd COMPONENT cloud)
install(FILES dist/systemd/fleetd-cloud.service DESTINATION ${FLEETD_UNIT_DIR}
  COMPONENT cloud)
install(FILES README.md DESTINATION share/doc/fleetd-cloud COMPONENT cloud)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME fleetd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT "fleetd maintainers <maintainers@fleetd.example.org>")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL edge cloud)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Debug info stays in the build tree; packages carry stripped programs.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_EDGE_PACKAGE_NAME fleetd)
set(CPACK_DEBIAN_EDGE_DESCRIPTION
  "device node and console of the fleetd telemetry system\nCollects system metrics, keeps them in SQLite and syncs them to a\nfleetd-cloud node; fleetctl shows a node's actors and devices.")
set(CPACK_DEBIAN_EDGE_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/dist/debian/fleetd/postinst
  ${PROJECT_SOURCE_DIR}/dist/debian/fleetd/conffiles)
set(CPACK_DEBIAN_CLOUD_PACKAGE_NAME fleetd-cloud)
set(CPACK_DEBIAN_CLOUD_DESCRIPTION
  "cloud node of the fleetd telemetry system\nAccepts device syncs on POST /v1/sync and keeps them in an embedded\nSQLite store.")
set(CPACK_DEBIAN_CLOUD_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/dist/debian/fleetd-cloud/postinst
  ${PROJECT_SOURCE_DIR}/dist/debian/fleetd-cloud/conffiles)
include(CPack)
