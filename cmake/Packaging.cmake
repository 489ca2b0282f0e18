# install() rules and Debian packages (cpack -G DEB): fleetd (device node,
# fleetctl) and fleetd-cloud, each with its systemd unit and example config.
set(FLEETD_UNIT_DIR /lib/systemd/system)

install(TARGETS fleetd fleetctl RUNTIME DESTINATION bin COMPONENT edge)
install(FILES config/edge.ini DESTINATION /etc/fleetd COMPONENT edge)
install(FILES dist/systemd/fleetd.service DESTINATION ${FLEETD_UNIT_DIR}
  COMPONENT edge)
install(FILES LICENSE DESTINATION share/doc/fleetd RENAME copyright
  COMPONENT edge)
install(FILES README.md DESTINATION share/doc/fleetd COMPONENT edge)

install(TARGETS fleetd-cloud RUNTIME DESTINATION bin COMPONENT cloud)
install(FILES config/cloud.ini DESTINATION /etc/fleetd COMPONENT cloud)
install(FILES dist/systemd/fleetd-cloud.service DESTINATION ${FLEETD_UNIT_DIR}
  COMPONENT cloud)
install(FILES LICENSE DESTINATION share/doc/fleetd-cloud RENAME copyright
  COMPONENT cloud)
install(FILES README.md DESTINATION share/doc/fleetd-cloud COMPONENT cloud)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME fleetd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT "fleetd maintainers <fleetd@localhost>")
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
  "fleetd device node and console\n Collects system metrics, keeps them in SQLite and syncs them to a\n fleetd-cloud node; fleetctl shows a node's actors and devices.")
set(CPACK_DEBIAN_EDGE_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/dist/debian/fleetd/postinst
  ${PROJECT_SOURCE_DIR}/dist/debian/fleetd/conffiles)
set(CPACK_DEBIAN_CLOUD_PACKAGE_NAME fleetd-cloud)
set(CPACK_DEBIAN_CLOUD_DESCRIPTION
  "fleetd cloud node\n Accepts device syncs on POST /v1/sync and keeps them in an embedded\n SQLite store.")
set(CPACK_DEBIAN_CLOUD_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/dist/debian/fleetd-cloud/postinst
  ${PROJECT_SOURCE_DIR}/dist/debian/fleetd-cloud/conffiles)
include(CPack)
