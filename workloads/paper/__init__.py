"""Paper mode across processes: ``execute`` runs the simulator, ``decide`` the desk, in lock-step
(:mod:`.protocol`)."""
