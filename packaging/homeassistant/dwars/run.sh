#!/usr/bin/with-contenv bashio
# shellcheck shell=bash
# The dwars add-on: apply the options to the config file, then run the control loop in the foreground.
set -euo pipefail

CONFIG="$(bashio::config 'config_file')"
if ! bashio::fs.file_exists "${CONFIG}"; then
    bashio::exit.nok "No config file at ${CONFIG}. Copy examples/home.toml of dwars there (folder addon_configs/<id>_dwars via Samba or the File editor), fill in your home and start the add-on again."
fi

# Options left empty keep what the config file says.
changes="{}"
text() { changes="$(jq -c --arg k "$1" --arg v "$2" '. + {($k): $v}' <<< "${changes}")"; }
number() { changes="$(jq -c --arg k "$1" --argjson v "$2" '. + {($k): $v}' <<< "${changes}")"; }
if bashio::config.has_value 'profile'; then text strategy.profile "$(bashio::config 'profile')"; fi
if bashio::config.has_value 'reserve_pct'; then number battery.reserve_pct "$(bashio::config 'reserve_pct')"; fi

# MQTT: the options, else the broker Home Assistant knows (the Mosquitto add-on). The password goes to dwars
# through the environment, never into the config file.
DWARS_MQTT_PASSWORD=""
if bashio::config.has_value 'mqtt_host'; then
    text runtime.mqtt_host "$(bashio::config 'mqtt_host')"
    number runtime.mqtt_port "$(bashio::config 'mqtt_port' 1883)"
    text runtime.mqtt_username "$(bashio::config 'mqtt_username' '')"
    DWARS_MQTT_PASSWORD="$(bashio::config 'mqtt_password' '')"
elif bashio::services.available 'mqtt'; then
    text runtime.mqtt_host "$(bashio::services 'mqtt' 'host')"
    number runtime.mqtt_port "$(bashio::services 'mqtt' 'port')"
    text runtime.mqtt_username "$(bashio::services 'mqtt' 'username')"
    DWARS_MQTT_PASSWORD="$(bashio::services 'mqtt' 'password')"
fi
export DWARS_MQTT_PASSWORD

/opt/dwars/bin/python /apply_options.py "${CONFIG}" "${changes}" || bashio::exit.nok "The add-on options do not fit ${CONFIG} (see above)."

bashio::log.info "dwars runs with ${CONFIG}; decisions are logged to /data/decisions.jsonl"
exec /opt/dwars/bin/dwars run --config "${CONFIG}" --log /data/decisions.jsonl
