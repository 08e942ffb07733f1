# Generates tests/prometheus/alerts_test.yaml: expected annotations are the
# rule templates with the test's labels filled in (simple {{ $labels.x }}
# substitution; the {{ if }}s are handled by hand).
import re, yaml
doc = yaml.safe_load(open('deploy/prometheus-operator/prometheusrule.yaml'))
rules = {r['alert']: r for g in doc['spec']['groups'] for r in g['rules']}
JOB = {'job': 'k8s-image-availability-exporter', 'instance': 'exporter:8080'}
C = {'namespace': 'prod', 'kind': 'deployment', 'name': 'web', 'container': 'app', 'image': 'registry.example.com/team/app:v1'}

def render(t, labels):
    # {{ if eq $labels.kind "pod" }}A{{ else if eq $labels.kind "job" }}B{{ else }}C{{ end }}
    def kind_choice(m):
        kind = labels.get('kind')
        return m.group(1) if kind == 'pod' else m.group(2) if kind == 'job' else m.group(3)
    t = re.sub(r'\{\{ if eq \$labels\.kind "pod" \}\}(.*?)\{\{ else if eq \$labels\.kind "job" \}\}(.*?)\{\{ else \}\}(.*?)\{\{ end \}\}', kind_choice, t, flags=re.S)
    t = re.sub(r'\{\{ if \$labels\.namespace \}\}(.*?)\{\{ end \}\}', lambda m: m.group(1) if labels.get('namespace') else '', t, flags=re.S)
    return re.sub(r'\{\{ \$labels\.(\w+) \}\}', lambda m: labels.get(m.group(1), ''), t)

def series(name, labels, values):
    inner = ','.join(f'{k}="{v}"' for k, v in labels.items())
    return {'series': f'{name}{{{inner}}}', 'values': values}

def alert(name, labels):
    r = rules[name]
    exp_labels = dict(labels); exp_labels.update(r['labels'])
    return {'exp_labels': exp_labels, 'exp_annotations': {k: render(v, labels) for k, v in r['annotations'].items()}}

def minutes(s):
    return int(s.rstrip('m'))

tests = []
classes = ['absent', 'authentication_failure', 'authorization_failure', 'registry_unavailable', 'bad_image_format', 'unknown_error', 'platform_unavailable']
names = {r['labels']['status']: a for a, r in rules.items()}
for cls in classes:
    name = names[cls]
    f = minutes(rules[name]['for'])
    input_series = [series('up', JOB, '1x40')]
    for other in ['available'] + classes:
        input_series.append(series(f'k8s_image_availability_exporter_{other}', {**JOB, **C}, '1x40' if other == cls else '0x40'))
    tests.append({
        'name': f'{name} fires after its for: ({cls})',
        'interval': '1m',
        'input_series': input_series,
        'alert_rule_test': [
            {'eval_time': f'{f - 1}m', 'alertname': name, 'exp_alerts': []},
            {'eval_time': f'{f + 1}m', 'alertname': name, 'exp_alerts': [alert(name, C)]},
        ] + [
            {'eval_time': f'{f + 1}m', 'alertname': names[o], 'exp_alerts': []} for o in classes if o != cls
        ],
    })
# The same in the --one-series-per-container format: only the class that is
# 1 has a series. Every class alert fires, and nothing else does.
for cls in classes:
    name = names[cls]
    f = minutes(rules[name]['for'])
    tests.append({
        'name': f'{name} fires in the one-series-per-container format ({cls})',
        'interval': '1m',
        'input_series': [series('up', JOB, '1x40'), series(f'k8s_image_availability_exporter_{cls}', {**JOB, **C}, '1x40')],
        'alert_rule_test': [
            {'eval_time': f'{f - 1}m', 'alertname': name, 'exp_alerts': []},
            {'eval_time': f'{f + 1}m', 'alertname': name, 'exp_alerts': [alert(name, C)]},
        ] + [
            {'eval_time': f'{f + 1}m', 'alertname': names[o], 'exp_alerts': []} for o in classes if o != cls
        ],
    })
# A class change in that format: the old class's series stops, the alert
# resolves at once (no five minutes of a stale series).
tests.append({
    'name': 'one-series-per-container: absent, then available again',
    'interval': '1m',
    'input_series': [series('up', JOB, '1x40'),
                     series('k8s_image_availability_exporter_absent', {**JOB, **C}, '1x15 stale'),
                     series('k8s_image_availability_exporter_available', {**JOB, **C}, '_x15 1x20')],
    'alert_rule_test': [
        {'eval_time': '12m', 'alertname': 'ImageAbsent', 'exp_alerts': [alert('ImageAbsent', C)]},
        {'eval_time': '17m', 'alertname': 'ImageAbsent', 'exp_alerts': []},
    ],
})
tests.append({'name': 'one-series-per-container: silent while available', 'interval': '1m',
              'input_series': [series('up', JOB, '1x40'), series('k8s_image_availability_exporter_available', {**JOB, **C}, '1x40')],
              'alert_rule_test': [{'eval_time': '30m', 'alertname': names[c], 'exp_alerts': []} for c in classes]})
# A bare pod and a standalone Job: the absent alert says what breaks for each.
for kind, name in [('pod', 'pg-1'), ('job', 'migrate')]:
    labels = {**C, 'kind': kind, 'name': name}
    tests.append({
        'name': f'ImageAbsent for a {kind}',
        'interval': '1m',
        'input_series': [series('up', JOB, '1x40'), series('k8s_image_availability_exporter_absent', {**JOB, **labels}, '1x40')],
        'alert_rule_test': [{'eval_time': '11m', 'alertname': 'ImageAbsent', 'exp_alerts': [alert('ImageAbsent', labels)]}],
    })
# Silent while available, and before the first check (no series at all).
avail = [series('up', JOB, '1x40')] + [series(f'k8s_image_availability_exporter_{c}', {**JOB, **C}, ('1x40' if c == 'available' else '0x40')) for c in ['available'] + classes]
tests.append({'name': 'silent while available', 'interval': '1m', 'input_series': avail,
              'alert_rule_test': [{'eval_time': '30m', 'alertname': names[c], 'exp_alerts': []} for c in classes]})
tests.append({'name': 'silent before the first check', 'interval': '1m',
              'input_series': [series('up', JOB, '1x40'), series('k8s_image_availability_exporter_checks', JOB, '1x40')],
              'alert_rule_test': [{'eval_time': '30m', 'alertname': names[c], 'exp_alerts': []} for c in classes]})
# The exporter down, and absent.
tests.append({'name': 'exporter down', 'interval': '1m', 'input_series': [series('up', JOB, '0x20')],
              'alert_rule_test': [
                  {'eval_time': '4m', 'alertname': 'ImageAvailabilityExporterDown', 'exp_alerts': []},
                  {'eval_time': '6m', 'alertname': 'ImageAvailabilityExporterDown', 'exp_alerts': [alert('ImageAvailabilityExporterDown', JOB)]},
                  {'eval_time': '6m', 'alertname': 'ImageAvailabilityExporterAbsent', 'exp_alerts': []},
              ]})
tests.append({'name': 'exporter absent', 'interval': '1m', 'input_series': [series('up', {'job': 'something-else', 'instance': 'x:1'}, '1x20')],
              'alert_rule_test': [
                  {'eval_time': '9m', 'alertname': 'ImageAvailabilityExporterAbsent', 'exp_alerts': []},
                  {'eval_time': '11m', 'alertname': 'ImageAvailabilityExporterAbsent', 'exp_alerts': [alert('ImageAvailabilityExporterAbsent', {'job': 'k8s-image-availability-exporter'})]},
              ]})
# Stuck: checks to run, none completed. Healthy: the counter grows.
tests.append({'name': 'exporter stuck', 'interval': '1m',
              'input_series': [series('up', JOB, '1x60'), series('k8s_image_availability_exporter_checks', JOB, '5x60'),
                               series('k8s_image_availability_exporter_completed_rechecks_total', JOB, '100x60')],
              'alert_rule_test': [
                  {'eval_time': '10m', 'alertname': 'ImageAvailabilityExporterStuck', 'exp_alerts': []},
                  {'eval_time': '17m', 'alertname': 'ImageAvailabilityExporterStuck', 'exp_alerts': [alert('ImageAvailabilityExporterStuck', JOB)]},
              ]})
tests.append({'name': 'exporter working, or with nothing to check', 'interval': '1m',
              'input_series': [series('up', JOB, '1x60'), series('k8s_image_availability_exporter_checks', {**JOB}, '5x60'),
                               series('k8s_image_availability_exporter_completed_rechecks_total', JOB, '0+1x60'),
                               series('up', {**JOB, 'instance': 'idle:8080'}, '1x60'),
                               series('k8s_image_availability_exporter_checks', {**JOB, 'instance': 'idle:8080'}, '0x60'),
                               series('k8s_image_availability_exporter_completed_rechecks_total', {**JOB, 'instance': 'idle:8080'}, '0x60')],
              'alert_rule_test': [{'eval_time': '40m', 'alertname': 'ImageAvailabilityExporterStuck', 'exp_alerts': []}]})
# Stale: a check last finished at t=0, recheck window 10m: stale after 20m, alert after 10m more.
ref = {**JOB, 'reference': 'registry.example.com/team/app:v1', 'credentials': 'anonymous'}
tests.append({'name': 'checks stale', 'interval': '1m',
              'input_series': [series('k8s_image_availability_exporter_last_check_timestamp_seconds', ref, '0x60'),
                               series('k8s_image_availability_exporter_recheck_within_seconds', JOB, '600x60')],
              'alert_rule_test': [
                  {'eval_time': '25m', 'alertname': 'ImageAvailabilityChecksStale', 'exp_alerts': []},
                  {'eval_time': '32m', 'alertname': 'ImageAvailabilityChecksStale', 'exp_alerts': [alert('ImageAvailabilityChecksStale', {'job': JOB['job'], 'instance': JOB['instance'], 'reference': ref['reference']})]},
              ]})
tests.append({'name': 'checks fresh', 'interval': '1m',
              'input_series': [series('k8s_image_availability_exporter_last_check_timestamp_seconds', ref, '0+60x60'),
                               series('k8s_image_availability_exporter_recheck_within_seconds', JOB, '600x60')],
              'alert_rule_test': [{'eval_time': '50m', 'alertname': 'ImageAvailabilityChecksStale', 'exp_alerts': []}]})
# Blind: a watched resource never listed.
blind = {**JOB, 'resource': 'deployments', 'namespace': ''}
tests.append({'name': 'exporter blind', 'interval': '1m',
              'input_series': [series('k8s_image_availability_exporter_watch_synced', {**JOB, 'resource': 'deployments', 'namespace': ''}, '0x30'),
                               series('k8s_image_availability_exporter_watch_synced', {**JOB, 'resource': 'secrets(dockercfg)', 'namespace': ''}, '1x30')],
              'alert_rule_test': [
                  {'eval_time': '14m', 'alertname': 'ImageAvailabilityExporterBlind', 'exp_alerts': []},
                  {'eval_time': '16m', 'alertname': 'ImageAvailabilityExporterBlind', 'exp_alerts': [alert('ImageAvailabilityExporterBlind', {**JOB, 'resource': 'deployments'})]},
              ]})
# A registry with no pulls left: one alert per registry, however many
# exporters or images; silent while pulls are left.
hub = {**JOB, 'registry': 'registry-1.docker.io'}
tests.append({'name': 'registry pull quota exhausted', 'interval': '1m',
              'input_series': [series('k8s_image_availability_exporter_registry_rate_limit_remaining', hub, '3 1 0x20'),
                               series('k8s_image_availability_exporter_registry_rate_limit_remaining', {**hub, 'instance': 'other:8080'}, '3 1 0x20'),
                               series('k8s_image_availability_exporter_registry_rate_limit_remaining', {**JOB, 'registry': 'ghcr.io'}, '40x22')],
              'alert_rule_test': [
                  {'eval_time': '6m', 'alertname': 'RegistryPullQuotaExhausted', 'exp_alerts': []},
                  {'eval_time': '8m', 'alertname': 'RegistryPullQuotaExhausted', 'exp_alerts': [alert('RegistryPullQuotaExhausted', {'registry': 'registry-1.docker.io'})]},
              ]})
tests.append({'name': 'registry pull quota refilled', 'interval': '1m',
              'input_series': [series('k8s_image_availability_exporter_registry_rate_limit_remaining', hub, '0x10 100x10')],
              'alert_rule_test': [
                  {'eval_time': '8m', 'alertname': 'RegistryPullQuotaExhausted', 'exp_alerts': [alert('RegistryPullQuotaExhausted', {'registry': 'registry-1.docker.io'})]},
                  {'eval_time': '15m', 'alertname': 'RegistryPullQuotaExhausted', 'exp_alerts': []},
              ]})
# A tag pushed again: fires after 30 minutes, in either format; silent
# while the pods run the tag's build, and when it ends sooner.
tests.append({'name': 'image tag moved', 'interval': '1m',
              'input_series': [series('k8s_image_availability_exporter_tag_moved', {**JOB, **C}, '0x5 1x40')],
              'alert_rule_test': [
                  {'eval_time': '20m', 'alertname': 'ImageTagMoved', 'exp_alerts': []},
                  {'eval_time': '40m', 'alertname': 'ImageTagMoved', 'exp_alerts': [alert('ImageTagMoved', C)]},
              ] + [{'eval_time': '40m', 'alertname': names[c], 'exp_alerts': []} for c in classes]})
tests.append({'name': 'a deliberate rollout does not page', 'interval': '1m',
              'input_series': [series('k8s_image_availability_exporter_tag_moved', {**JOB, **C}, '1x20 0x20')],
              'alert_rule_test': [{'eval_time': '35m', 'alertname': 'ImageTagMoved', 'exp_alerts': []}]})
tests.append({'name': 'tag moved in the one-series-per-container format', 'interval': '1m',
              'input_series': [series('k8s_image_availability_exporter_tag_moved', {**JOB, **C}, '1x40'),
                               series('k8s_image_availability_exporter_available', {**JOB, **C}, '1x40')],
              'alert_rule_test': [{'eval_time': '31m', 'alertname': 'ImageTagMoved', 'exp_alerts': [alert('ImageTagMoved', C)]}]})
out = {'rule_files': ['rules.yaml'], 'evaluation_interval': '1m', 'tests': tests}
header = '''# promtool test rules for deploy/prometheus-operator/prometheusrule.yaml.
# tests/prometheus_rules.rs writes that file's spec.groups to rules.yaml next
# to a copy of this file and runs `promtool test rules`. Every alert: fires
# after its `for:`, silent while available, silent before the first check,
# in the default format (every class gauge, 0 or 1) and in the
# --one-series-per-container format (only the class that is 1);
# and the exporter down, absent, stuck, stale and blind; a registry's pull
# quota used up; a tag moved.
# Regenerate the expected annotations after editing the rules with
# tests/prometheus/gen_alerts_test.py.
'''
open('tests/prometheus/alerts_test.yaml', 'w').write(header + yaml.safe_dump(out, sort_keys=False, width=1000))
