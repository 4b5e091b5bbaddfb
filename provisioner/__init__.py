"""cachesync's Kubernetes provisioner (``cachesync.io/cache``) and pod-completion release.

    keys.py        every annotation, label, finalizer and name put on objects
    objects.py     accessors and patches over API objects (JSON dicts)
    selector.py    label selectors in string form
    policy.py      write policy: StorageClass parameters + the claim's annotation
    classes.py     a cachesync StorageClass, read and checked
    claims.py      what a PVC asks for, checked
    volume.py      the volume record and the hostPath PV that carries it
    helper.py      helper Pods (setup/teardown/cleanup) and what their status means
    attempts.py    failed-helper bookkeeping: counters, backoff
    helperpod.py   one helper Pod driven from absent to done (setup/cleanup/teardown)
    actions.py     what reconcilers want done (plain values)
    provision.py   reconcile a claim: setup helper, PV, cleanup of a claim deleted half way
    release.py     reconcile a released PV: teardown helper, then delete
    completion.py  reconcile a finished Pod: release its claims with its result
    kube.py        the one adapter to the Kubernetes API
    workqueue.py   delaying, de-duplicating work queue
    controller.py  watches -> queue -> reconcilers -> kube.py
    config.py      the controller's settings
    main.py        the cachesync-provisioner entry point
"""
