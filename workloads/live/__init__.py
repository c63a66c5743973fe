"""Live mode: ``decide`` trades on ``md.*`` as it arrives; ``execute`` sends the orders to the venue."""
