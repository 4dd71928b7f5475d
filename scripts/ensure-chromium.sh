#!/bin/sh
# Debian's Chromium for the test that renders the HTML report headless. Installs it when missing and
# this is root on Debian/Ubuntu; otherwise says how (the render test then fails under CI=true, skips elsewhere).
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the HTML report test ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; } \
        || echo "could not install chromium; the HTML render test needs it (apt-get install chromium)"
else
    echo "chromium not found: the HTML render test needs it (as root: apt-get install chromium)"
fi
exit 0
